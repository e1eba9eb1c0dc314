"""Check one pipeline spec against pachhook's JSON Schema, without the jsonschema library.

`import jsonschema` costs 100-230 ms, more than the whole budget of a pre-commit hook, so
this module evaluates the few keywords that `data/pipeline-spec.schema.json` uses. The
schema file stays a standard draft 2020-12 document: tests/test_schema.py proves with the
real jsonschema library that both agree on which documents are valid. Failures become
messages a person can act on (unknown fields with a suggestion, fields removed in 2.0,
durations rewritten into the seconds form pachctl 2.7+ wants).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from pachhook.core.diagnostics import ERROR, LONGEST_SHOWN_KEY, JsonPath, Problem, format_json_path

SCHEMA_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "pipeline-spec.schema.json"
)

# Deeper documents are refused rather than risking Python's recursion limit; real specs
# nest about ten levels (the loader already stops at 100).
MAX_DEPTH = 120

_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "$defs"})
_SUPPORTED = (
    frozenset(
        {
            "type",
            "properties",
            "additionalProperties",
            "required",
            "enum",
            "pattern",
            "items",
            "minimum",
            "maximum",
            "not",
            "allOf",
            "anyOf",
            "$ref",
        }
    )
    | _ANNOTATIONS
)

_TYPE_WORDS = {
    "string": "a string",
    "boolean": "a boolean (true or false)",
    "object": "a mapping",
    "array": "a list",
    "integer": "an integer",
    "number": "a number",
    "null": "null",
}

# Fields pachctl 1.x accepted and 2.x refuses, keyed by ($defs name, key as written).
_REMOVED_HINTS = {
    "hashtree_spec": "delete it",
    "standby": "delete it ('autoscaling' is the closest 2.x setting)",
    "cache_size": "delete it",
    "enable_stats": "delete it",
    "max_queue_size": "delete it",
    "chunk_spec": "delete it and use 'datum_set_spec'",
    "build": "delete it, build the image outside the spec and set transform.image",
    "overwrite": "delete it",
    "marker": "delete it",
    "coefficient": "delete it and set 'constant'",
    "git": "delete it; git inputs no longer exist",
}
_REMOVED = {
    "CreatePipelineRequest": {
        "hashtree_spec": "hashtree_spec",
        "hashtreeSpec": "hashtree_spec",
        "standby": "standby",
        "cache_size": "cache_size",
        "cacheSize": "cache_size",
        "enable_stats": "enable_stats",
        "enableStats": "enable_stats",
        "max_queue_size": "max_queue_size",
        "maxQueueSize": "max_queue_size",
        "chunk_spec": "chunk_spec",
        "chunkSpec": "chunk_spec",
    },
    "Transform": {"build": "build"},
    "Spout": {"overwrite": "overwrite", "marker": "marker"},
    "ParallelismSpec": {"coefficient": "coefficient"},
    "Input": {"git": "git"},
}


class _Node:
    """One compiled schema object; attributes are None when the keyword is absent."""

    __slots__ = (
        "always",
        "types",
        "properties",
        "additional",
        "required",
        "enum",
        "pattern",
        "items",
        "minimum",
        "maximum",
        "not_",
        "all_of",
        "any_of",
        "ref",
        "description",
        "title",
        "name",
        "raw",
        "nullable_of",
        "only_types",
        "exclusive",
    )

    def __init__(self) -> None:
        self.always: Optional[bool] = None  # boolean schema: True accepts, False rejects
        self.types: Optional[Tuple[str, ...]] = None
        self.properties: Optional[Dict[str, "_Node"]] = None
        self.additional: Any = None  # None (absent), False, or a _Node
        self.required: Optional[Tuple[str, ...]] = None
        self.enum: Optional[frozenset] = None
        self.pattern: Optional["re.Pattern[str]"] = None
        self.items: Optional["_Node"] = None
        self.minimum: Any = None
        self.maximum: Any = None
        self.not_: Optional["_Node"] = None
        self.all_of: Optional[Tuple["_Node", ...]] = None
        self.any_of: Optional[Tuple["_Node", ...]] = None
        self.ref: Optional[str] = None
        self.description: Optional[str] = None
        self.title: Optional[str] = None
        self.name: Optional[str] = None  # the $defs name, for hints
        self.raw: Any = None
        # Fast paths for the two shapes that make up most of the schema:
        # {"anyOf": [{"type": "null"}, X]} and {"type": [...]} alone.
        self.nullable_of: Optional["_Node"] = None
        self.only_types: Optional[Tuple[str, ...]] = None
        # allOf members {"not": {"required": [a, b]}} ("not both spellings"), checked directly
        self.exclusive: Tuple[Tuple[str, str], ...] = ()


# Problems listed per spec: a million list items of the wrong type make one summary line,
# not a million lines (and not the seconds it takes to word them).
MAX_PROBLEMS = 100


class _Enough(Exception):
    """Raised inside the evaluation once MAX_PROBLEMS are found."""


class SchemaError(Exception):
    """The schema file uses something this evaluator does not implement."""


def _compile(raw: Any, name: Optional[str] = None, memo: Optional[Dict[str, _Node]] = None) -> _Node:
    # Identical sub-schemas ({"type": ["string", "null"]} appears ~200 times) share one node.
    key = None
    if memo is not None and name is None:
        key = repr(raw)
        if key in memo:
            return memo[key]
    node = _build(raw, name, memo)
    if key is not None:
        memo[key] = node  # type: ignore[index]
    return node


def _build(raw: Any, name: Optional[str], memo: Optional[Dict[str, _Node]]) -> _Node:
    node = _Node()
    node.raw = raw
    node.name = name
    if isinstance(raw, bool):
        node.always = raw
        return node
    if not isinstance(raw, dict):
        raise SchemaError(f"schema must be an object or boolean, got {raw!r}")
    unknown = set(raw) - _SUPPORTED
    if unknown:
        raise SchemaError(f"unsupported schema keywords: {sorted(unknown)}")
    if "type" in raw:
        t = raw["type"]
        node.types = (t,) if isinstance(t, str) else tuple(t)
    if "properties" in raw:
        node.properties = {k: _compile(v, None, memo) for k, v in raw["properties"].items()}
    if "additionalProperties" in raw:
        extra = raw["additionalProperties"]
        node.additional = False if extra is False else _compile(extra, None, memo)
    if "required" in raw:
        node.required = tuple(raw["required"])
    if "enum" in raw:
        if not all(isinstance(v, str) for v in raw["enum"]):
            raise SchemaError("only string enums are supported")
        node.enum = frozenset(raw["enum"])
    if "pattern" in raw:
        node.pattern = re.compile(raw["pattern"])
    if "items" in raw:
        node.items = _compile(raw["items"], None, memo)
    node.minimum = raw.get("minimum")
    node.maximum = raw.get("maximum")
    if "not" in raw:
        node.not_ = _compile(raw["not"], None, memo)
    if "allOf" in raw:
        rest = []
        for sub in raw["allOf"]:
            inner = sub.get("not") if isinstance(sub, dict) and set(sub) == {"not"} else None
            if (
                isinstance(inner, dict)
                and set(inner) == {"required"}
                and len(inner["required"]) == 2
                and raw.get("type") == "object"
            ):
                node.exclusive += (tuple(inner["required"]),)  # type: ignore[assignment]
            else:
                rest.append(sub)
        node.all_of = tuple(_compile(s, None, memo) for s in rest) or None
    if "anyOf" in raw:
        node.any_of = tuple(_compile(s, None, memo) for s in raw["anyOf"])
    if "$ref" in raw:
        ref = raw["$ref"]
        if not ref.startswith("#/$defs/"):
            raise SchemaError(f"only local $defs references are supported, got {ref}")
        node.ref = ref[len("#/$defs/") :]
    node.description = raw.get("description")
    node.title = raw.get("title")
    if set(raw) == {"anyOf"} and len(raw["anyOf"]) == 2 and raw["anyOf"][0] == {"type": "null"}:
        node.nullable_of = node.any_of[1]  # type: ignore[index]
    if set(raw) == {"type"}:
        node.only_types = node.types
    return node


class _Defs(dict):
    """The $defs, each compiled the first time a check reaches it (a spec uses a few of them)."""

    def __init__(self, raw: Dict[str, Any], memo: Dict[str, _Node]) -> None:
        super().__init__()
        self.raw = raw
        self.memo = memo

    def __missing__(self, name: str) -> _Node:
        node = _compile(self.raw[name], name, self.memo)
        self[name] = node
        return node


class _Schema:
    def __init__(self, raw: Dict[str, Any]) -> None:
        self.memo: Dict[str, _Node] = {}
        self.raw_defs = raw.get("$defs", {})
        self.defs = _Defs(self.raw_defs, self.memo)

    def compile_all(self) -> None:
        """Compile every definition now and check that every $ref resolves (used by the tests)."""
        for name in self.raw_defs:
            self.defs[name]
        missing = {n.ref for n in self.memo.values() if n.ref and n.ref not in self.raw_defs}
        if missing:
            raise SchemaError(f"unresolved $ref: {sorted(missing)}")


_schema: Optional[_Schema] = None


def _load() -> _Schema:
    global _schema
    if _schema is None:
        with open(SCHEMA_PATH, encoding="utf-8") as fh:
            _schema = _Schema(json.load(fh))
    return _schema


_EXACT_TYPES = {str: "string", bool: "boolean", int: "integer", dict: "object", list: "array", type(None): "null"}


def json_type(value: Any) -> str:
    """The JSON Schema type name of a Python value ("unknown" for non-JSON values)."""
    exact = _EXACT_TYPES.get(type(value))
    if exact is not None:
        return exact
    if value is None:
        return "null"
    if value is True or value is False:
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "unknown"


def _type_ok(value: Any, kind: str, types: Tuple[str, ...]) -> bool:
    if kind in types:
        return True
    return kind == "integer" and "number" in types


def describe(value: Any) -> str:
    """A short, human rendering of a JSON value for messages."""
    kind = json_type(value)
    if kind == "null":
        return "null"
    if kind == "boolean":
        return "the boolean " + ("true" if value else "false")
    if kind in ("integer", "number"):
        return f"the number {_number_text(value)}"
    if kind == "string":
        shown = value if len(value) <= 60 else value[:57] + "..."
        return "the string " + json.dumps(shown, ensure_ascii=False)
    if kind == "object":
        return "a mapping"
    if kind == "array":
        return "a list"
    return f"a {type(value).__name__}"


def _number_text(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:  # ints beyond Python's str conversion limit
        return "with more than 4000 digits"
    return text if len(text) <= 40 else text[:20] + "..." + text[-10:]


def _subject(path: JsonPath) -> str:
    if not path:
        return "the pipeline spec"
    last = path[-1]
    if isinstance(last, int):
        return f"item {last} of '{format_json_path(path[:-1])}'"
    return f"'{last}'"


def _where(path: JsonPath) -> str:
    return f"in {format_json_path(path)}" if path else "at the top level"


class _Checker:
    def __init__(self, schema: _Schema) -> None:
        self.defs = schema.defs
        self.out: List[Problem] = []

    def report(self, path: JsonPath, message: str, rule: str) -> None:
        if len(self.out) >= MAX_PROBLEMS:
            raise _Enough()
        self.out.append(Problem(path, message, ERROR, rule))

    def check(self, node: _Node, value: Any, path: JsonPath, collect: bool) -> bool:
        """Whether value matches node; with collect, failures are also reported."""
        if node.nullable_of is not None:
            return value is None or self.check(node.nullable_of, value, path, collect)
        if node.only_types is not None:
            if _type_ok(value, json_type(value), node.only_types):
                return True
            if collect:
                self._type_error(node, value, path)
            return False
        if node.always is not None:
            if not node.always and collect:
                self.report(path, f"{_subject(path)} is not allowed here", "schema")
            return node.always
        if len(path) > MAX_DEPTH:
            if collect:
                self.report(
                    path, f"the spec nests more than {MAX_DEPTH} levels deep; it cannot be a pipeline spec", "too-deep"
                )
            return False
        ok = True
        kind = json_type(value)
        if node.types is not None and not _type_ok(value, kind, node.types):
            if collect:
                self._type_error(node, value, path)
            return False
        if node.ref is not None:
            target = self.defs[node.ref]
            if target.description is not None and target.properties is None:
                # Scalar definitions (durations, integers, enums) fail as one readable message.
                if not self.check(target, value, path, False):
                    if collect:
                        self._described_error(target, value, path)
                    ok = False
            elif not self.check(target, value, path, collect):
                ok = False
                if not collect:
                    return False
        if kind == "object":
            if not self._object(node, value, path, collect):
                ok = False
                if not collect:
                    return False
        elif kind == "array" and node.items is not None:
            items = node.items
            for i, item in enumerate(value):
                if not self.check(items, item, path + (i,), collect):
                    ok = False
                    if not collect:
                        return False
        elif kind == "string":
            if node.enum is not None and value not in node.enum:
                if collect:
                    self._enum_error(node, value, path)
                return False
            if node.pattern is not None and node.pattern.search(value) is None:
                if collect:
                    self.report(
                        path, f"{_subject(path)} must match {node.pattern.pattern}, got {describe(value)}", "schema"
                    )
                return False
        elif kind in ("integer", "number"):
            if node.minimum is not None and value < node.minimum:
                if collect:
                    self.report(
                        path, f"{_subject(path)} must be at least {node.minimum}, got {_number_text(value)}", "schema"
                    )
                return False
            if node.maximum is not None and value > node.maximum:
                if collect:
                    self.report(
                        path, f"{_subject(path)} must be at most {node.maximum}, got {_number_text(value)}", "schema"
                    )
                return False
        if node.enum is not None and kind != "string":
            if collect:
                self._enum_error(node, value, path)
            return False
        if node.all_of is not None:
            for sub in node.all_of:
                if not self.check(sub, value, path, collect):
                    ok = False
                    if not collect:
                        return False
        if node.any_of is not None and not self._any_of(node, value, path, collect):
            ok = False
            if not collect:
                return False
        if node.not_ is not None and self.check(node.not_, value, path, False):
            if collect:
                self._not_error(node, value, path)
            return False
        return ok

    def _object(self, node: _Node, value: Dict[str, Any], path: JsonPath, collect: bool) -> bool:
        ok = True
        for first, second in node.exclusive:
            if first in value and second in value:
                if not collect:
                    return False
                self.report(
                    path + (second,),
                    f"both '{first}' and '{second}' are set {_where(path)}; keep one",
                    "both-spellings",
                )
                ok = False
        if node.required is not None:
            for key in node.required:
                if key not in value:
                    if not collect:
                        return False
                    self.report(path, f"missing required field '{key}' {_where(path)}", "schema")
                    ok = False
        props = node.properties
        if props is None and node.additional is None:
            return ok
        for key, item in value.items():
            sub = props.get(key) if props is not None else None
            if sub is None:
                extra = node.additional
                if extra is None:
                    continue
                if extra is False:
                    if not collect:
                        return False
                    self._unknown_field(node, key, path)
                    ok = False
                    continue
                sub = extra
            if not self.check(sub, item, path + (key,), collect):
                ok = False
                if not collect:
                    return False
        return ok

    def _any_of(self, node: _Node, value: Any, path: JsonPath, collect: bool) -> bool:
        branches = node.any_of or ()
        for sub in branches:
            if self.check(sub, value, path, False):
                return True
        if not collect:
            return False
        # Report through the branch meant for this kind of value (e.g. the object branch of
        # "null or Transform"), so the message is about the real mistake.
        kind = json_type(value)
        fitting = [b for b in branches if b.types is None or _type_ok(value, kind, b.types)]
        if len(fitting) == 1:
            self.check(fitting[0], value, path, True)
        else:
            wanted = [b.description or _expected_types(b) for b in branches]
            self.report(
                path, f"{_subject(path)} must be {' or '.join(w for w in wanted if w)}, got {describe(value)}", "type"
            )
        return False

    # -- messages -------------------------------------------------------------------------

    def _type_error(self, node: _Node, value: Any, path: JsonPath) -> None:
        expected = _expected_types(node)
        if "object" in (node.types or ()) and node.properties is not None:
            fields = [k for k in node.properties if k != "$schema"]
            if fields:
                expected += f" (with fields such as '{fields[0]}')"
        message = f"{_subject(path)} must be {expected}, got {describe(value)}"
        if "boolean" in (node.types or ()) and isinstance(value, str) and value.lower() in _BOOLISH:
            message += "; write true or false without quotes"
        elif "string" in (node.types or ()) and json_type(value) in ("integer", "number", "boolean"):
            message += quote_hint(value, path)
        self.report(path, message, "type")

    def _described_error(self, target: _Node, value: Any, path: JsonPath) -> None:
        message = f"{_subject(path)} must be {target.description}, got {describe(value)}"
        rule = "type"
        if target.name == "duration":
            rule = "duration"
            hint = duration_hint(value)
            message += (
                f"; pachctl 2.7+ reads only seconds: write {json.dumps(hint)}"
                if hint
                else "; pachctl 2.7+ reads only seconds"
            )
        elif target.name == "double" and isinstance(value, str):
            cores = _cpu_hint(value)
            if cores is not None:
                message += f"; write {cores} (a number of CPU cores)"
        elif target.name == "timestamp":
            rule = "timestamp"
        elif target.name in ("TolerationOperator", "TaintEffect", "FileFormatType"):
            rule = "enum"
        self.report(path, message, rule)

    def _enum_error(self, node: _Node, value: Any, path: JsonPath) -> None:
        names = ", ".join(f"'{n}'" for n in sorted(node.enum or ()))
        self.report(path, f"{_subject(path)} must be one of {names}, got {describe(value)}", "enum")

    def _not_error(self, node: _Node, value: Any, path: JsonPath) -> None:
        inner = node.not_
        if inner is not None and inner.required is not None and len(inner.required) == 2 and inner.properties is None:
            first, second = inner.required
            self.report(
                path + (second,), f"both '{first}' and '{second}' are set {_where(path)}; keep one", "both-spellings"
            )
            return
        message = node.description or f"{_subject(path)} matches a form that is not allowed"
        self.report(path, message, "one-of")

    def _unknown_field(self, node: _Node, key: Any, path: JsonPath) -> None:
        if not isinstance(key, str):  # YAML can give non-string keys; JSON never does
            self.report(
                path + (key,),
                f"field names are strings, but {describe(key)} is used as a key {_where(path)}",
                "unknown-field",
            )
            return
        removed = _REMOVED.get(node.name or "", {}).get(key)
        if removed is not None:
            self.report(
                path + (key,), f"'{key}' was removed in Pachyderm 2.0; {_REMOVED_HINTS[removed]}", "removed-field"
            )
            return
        known = [k for k in (node.properties or {}) if k != "$schema"]
        message = f"unknown field '{_shown_key(key)}' {_where(path)}"
        if len(self.out) >= _SUGGESTION_LIMIT or len(key) > _LONGEST_FIELD:
            # hostile input (thousands of unknown keys, or huge ones): suggestions cost ~1 ms
            # each, and no field of the spec is that long anyway
            self.report(path + (key,), message, "unknown-field")
            return
        homes = [] if _folded_match(key, known) else self._field_homes(node, key)
        if len(homes) == 1:
            message += f"; it belongs under '{homes[0]}' ({homes[0]}.{key})"
        elif homes:
            message += "; it belongs under one of " + ", ".join(f"'{h}'" for h in homes)
        else:
            guess = _suggest(key, known)
            if guess:
                message += f"; did you mean '{guess}'?"
        self.report(path + (key,), message, "unknown-field")

    def _field_homes(self, node: _Node, key: str) -> List[str]:
        """Child fields of node whose own fields include key: a field written one level too high."""
        homes: Dict[str, str] = {}  # $defs name -> first field spelling that leads there
        for name, sub in (node.properties or {}).items():
            for target in _refs_of(sub):
                if key != "$schema" and key in (self.defs[target].properties or {}):
                    homes.setdefault(target, name)
        return list(homes.values())


_SUGGESTION_LIMIT = 100  # problems after which unknown fields get no "did you mean"
_LONGEST_FIELD = LONGEST_SHOWN_KEY  # longer keys are no typo of a spec field: no suggestion, shown shortened


def _shown_key(key: str) -> str:
    """The key as a message quotes it: a megabyte-long key must not make a megabyte-long line."""
    shown = key if len(key) <= _LONGEST_FIELD else f"{key[:_LONGEST_FIELD]}... ({len(key)} characters)"
    # a newline or a control character in a key is shown escaped: a message is one line
    return shown if shown.isprintable() else json.dumps(shown, ensure_ascii=False)[1:-1]


_BOOLISH = frozenset({"true", "false", "yes", "no", "on", "off", "y", "n"})


def quote_hint(value: Any, path: JsonPath) -> str:
    """Advice for a number or boolean where a string belongs: quote it (with a unit for a size)."""
    if value is True or value is False:
        return f'; quote it: "{"true" if value else "false"}"'
    text = _number_text(value)
    if path and path[-1] in ("memory", "disk") and len(text) <= 20:
        # a bare number of bytes is almost never meant: suggest the unit people mean
        return f'; a quantity is a string with a unit: write "{text}Mi" (mebibytes) or "{text}M", or "{text}" for bytes'
    return f'; quote it: "{text}"'


def _refs_of(node: _Node) -> List[str]:
    refs = [node.ref] if node.ref else []
    for sub in node.any_of or ():
        if sub.ref:
            refs.append(sub.ref)
    return refs


def _expected_types(node: _Node) -> str:
    if node.description:
        return node.description
    if node.types is None:
        return ""
    words = [_TYPE_WORDS.get(t, t) for t in node.types if t != "null"] or ["null"]
    return " or ".join(words)


def _folded_match(key: str, known: List[str]) -> Optional[str]:
    """A known field that differs from key only in case, '_' or '-' ("URL" for "url")."""
    lowered = {k.lower().replace("_", ""): k for k in known}
    return lowered.get(key.lower().replace("_", "").replace("-", ""))


def _suggest(key: str, known: List[str]) -> Optional[str]:
    folded = _folded_match(key, known)
    if folded:
        return folded
    import difflib  # only on the error path

    matches = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return matches[0] if matches else None


_GO_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def duration_hint(value: Any) -> Optional[str]:
    """The seconds form of a Go duration or a bare number ("1h30m" -> "5400s"), or None."""
    from decimal import Decimal, InvalidOperation  # error path only

    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None
    sign = ""
    if text[:1] in "+-" and text:
        sign, text = ("-" if text[0] == "-" else ""), text[1:]
    try:
        if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
            total = Decimal(text)
        else:
            pos, total = 0, Decimal(0)
            if not text:
                return None
            for m in _GO_DURATION.finditer(text):
                if m.start() != pos or m.group(1) in ("", "."):
                    return None
                total += Decimal(m.group(1)) * _UNIT_NS[m.group(2)] / Decimal(10**9)
                pos = m.end()
            if pos != len(text):
                return None
    except InvalidOperation:
        return None
    rendered = format(total.normalize(), "f") if total else "0"
    if "." in rendered:
        rendered = rendered.rstrip("0").rstrip(".")
        whole, _, frac = rendered.partition(".")
        if len(frac) > 9:
            return None
    return f"{sign}{rendered}s"


def _cpu_hint(value: str) -> Optional[str]:
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(m?)\s*", value)
    if not m:
        return None
    number = float(m.group(1)) / (1000 if m.group(2) else 1)
    return repr(round(number, 6)) if number != int(number) else str(int(number))


def check(document: Any) -> List[Problem]:
    """Check one parsed, rendered spec document against the pipeline-spec schema.

    Returns the problems found, each located by JSON path; never raises on any value.
    """
    if not isinstance(document, dict):
        return [not_a_mapping(document)]
    checker = _Checker(_load())
    try:
        checker.check(checker.defs["CreatePipelineRequest"], document, (), True)
    except RecursionError:
        return [Problem((), "the spec nests too deeply to check", ERROR, "too-deep")]
    except _Enough:
        summary = f"more problems in this spec are not listed (the first {MAX_PROBLEMS} are)"
        return _dedupe(checker.out) + [Problem((), summary, ERROR, "too-many-problems")]
    return _dedupe(checker.out)


def not_a_mapping(document: Any) -> Problem:
    """The one problem reported for a document that is not a mapping (shared with rules.check)."""
    return Problem(
        (),
        f"a pipeline spec must be a mapping of fields (a JSON object), got {describe(document)}",
        ERROR,
        "not-a-mapping",
    )


def _dedupe(problems: List[Problem]) -> List[Problem]:
    seen = set()
    out = []
    for p in problems:
        key = (p.path, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
