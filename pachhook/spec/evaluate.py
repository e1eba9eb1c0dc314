"""Evaluate one pipeline spec against pachhook's JSON Schema, without the jsonschema library.

`import jsonschema` costs 100-230 ms, more than the whole budget of a pre-commit hook, so
this module evaluates the few keywords that `data/pipeline-spec.schema.json` uses. The
schema file stays a standard draft 2020-12 document: tests/test_schema.py proves with the
real jsonschema library that both agree on which documents are valid.

Evaluation only says *what* failed, as `Failure` records (which keyword, where, on which
value); `pachhook.spec.wording` turns them into messages, and `pachhook.spec.schema.check`
puts the two together.
"""

from __future__ import annotations

import json
import os
import re

from pachhook.core.diagnostics import JsonPath
from pachhook.core.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (~5 ms) and pathlib stay off the hooks' paths: annotations only
    from typing import Any, Dict, FrozenSet, List, Optional, Tuple

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


class SchemaNode:
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
        self.properties: Optional[Dict[str, "SchemaNode"]] = None
        self.additional: Any = None  # None (absent), False, or a SchemaNode
        self.required: Optional[Tuple[str, ...]] = None
        self.enum: Optional[FrozenSet[str]] = None
        self.pattern: Optional["re.Pattern[str]"] = None
        self.items: Optional["SchemaNode"] = None
        self.minimum: Any = None
        self.maximum: Any = None
        self.not_: Optional["SchemaNode"] = None
        self.all_of: Optional[Tuple["SchemaNode", ...]] = None
        self.any_of: Optional[Tuple["SchemaNode", ...]] = None
        self.ref: Optional[str] = None
        self.description: Optional[str] = None
        self.title: Optional[str] = None
        self.name: Optional[str] = None  # the $defs name, for hints
        self.raw: Any = None
        # Fast paths for the two shapes that make up most of the schema:
        # {"anyOf": [{"type": "null"}, X]} and {"type": [...]} alone.
        self.nullable_of: Optional["SchemaNode"] = None
        self.only_types: Optional[Tuple[str, ...]] = None
        # allOf members {"not": {"required": [a, b]}} ("not both spellings"), checked directly
        self.exclusive: Tuple[Tuple[str, str], ...] = ()


# Problems listed per spec: a million list items of the wrong type make one summary line,
# not a million lines (and not the seconds it takes to word them).
MAX_PROBLEMS = 100


class Enough(Exception):
    """Raised inside the evaluation once MAX_PROBLEMS are found."""


class SchemaError(Exception):
    """The schema file uses something this evaluator does not implement."""


def _compile(raw: Any, name: Optional[str] = None, memo: Optional[Dict[str, SchemaNode]] = None) -> SchemaNode:
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


def _build(raw: Any, name: Optional[str], memo: Optional[Dict[str, SchemaNode]]) -> SchemaNode:
    node = SchemaNode()
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
                node.exclusive += ((inner["required"][0], inner["required"][1]),)
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


class Defs(dict[str, SchemaNode]):  # the built-in generic: typing is not imported at run time
    """The $defs, each compiled the first time a check reaches it (a spec uses a few of them)."""

    def __init__(self, raw: Dict[str, Any], memo: Dict[str, SchemaNode]) -> None:
        super().__init__()
        self.raw = raw
        self.memo = memo

    def __missing__(self, name: str) -> SchemaNode:
        node = _compile(self.raw[name], name, self.memo)
        self[name] = node
        return node


class Schema:
    def __init__(self, raw: Dict[str, Any]) -> None:
        self.memo: Dict[str, SchemaNode] = {}
        self.raw_defs = raw.get("$defs", {})
        self.defs = Defs(self.raw_defs, self.memo)

    def compile_all(self) -> None:
        """Compile every definition now and check that every $ref resolves (used by the tests)."""
        for name in self.raw_defs:
            self.defs[name]
        missing = {n.ref for n in self.memo.values() if n.ref and n.ref not in self.raw_defs}
        if missing:
            raise SchemaError(f"unresolved $ref: {sorted(missing)}")


_schema: Optional[Schema] = None


def load() -> Schema:
    global _schema
    if _schema is None:
        with open(SCHEMA_PATH, encoding="utf-8") as fh:
            _schema = Schema(json.load(fh))
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


class Failure(Record):
    """One keyword a value failed: `kind` names it, `path` is where it is reported.

    kind: "type", "described" (a scalar definition such as a duration, as a whole), "enum",
    "pattern", "minimum", "maximum", "not", "false" (a false schema), "required",
    "unknown-field", "both-spellings", "any-of" (no branch fits the kind of value) or
    "too-deep". `detail` is the missing or unknown key, or the two spellings.
    """

    __slots__ = ("kind", "path", "node", "value", "detail")

    def __init__(self, kind: str, path: JsonPath, node: SchemaNode, value: Any, detail: Any = None) -> None:
        self.kind = kind
        self.path = path
        self.node = node
        self.value = value
        self.detail = detail


class Evaluator:
    """Walks a value and its schema; with collect, every failure goes to `failures`."""

    def __init__(self, schema: Schema, limit: int = MAX_PROBLEMS) -> None:
        self.defs = schema.defs
        self.failures: List[Failure] = []
        self.limit = limit

    def fail(self, kind: str, path: JsonPath, node: SchemaNode, value: Any, detail: Any = None) -> None:
        if len(self.failures) >= self.limit:
            raise Enough()
        self.failures.append(Failure(kind, path, node, value, detail))

    def check(self, node: SchemaNode, value: Any, path: JsonPath, collect: bool) -> bool:
        """Whether value matches node; with collect, failures are also recorded."""
        if node.nullable_of is not None:
            return value is None or self.check(node.nullable_of, value, path, collect)
        if node.only_types is not None:
            if _type_ok(value, json_type(value), node.only_types):
                return True
            if collect:
                self.fail("type", path, node, value)
            return False
        if node.always is not None:
            if not node.always and collect:
                self.fail("false", path, node, value)
            return node.always
        if len(path) > MAX_DEPTH:
            if collect:
                self.fail("too-deep", path, node, value)
            return False
        ok = True
        kind = json_type(value)
        if node.types is not None and not _type_ok(value, kind, node.types):
            if collect:
                self.fail("type", path, node, value)
            return False
        if node.ref is not None:
            target = self.defs[node.ref]
            if target.description is not None and target.properties is None:
                # Scalar definitions (durations, integers, enums) fail as one failure.
                if not self.check(target, value, path, False):
                    if collect:
                        self.fail("described", path, target, value)
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
                    self.fail("enum", path, node, value)
                return False
            if node.pattern is not None and node.pattern.search(value) is None:
                if collect:
                    self.fail("pattern", path, node, value)
                return False
        elif kind in ("integer", "number"):
            if node.minimum is not None and value < node.minimum:
                if collect:
                    self.fail("minimum", path, node, value)
                return False
            if node.maximum is not None and value > node.maximum:
                if collect:
                    self.fail("maximum", path, node, value)
                return False
        if node.enum is not None and kind != "string":
            if collect:
                self.fail("enum", path, node, value)
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
                self.fail("not", path, node, value)
            return False
        return ok

    def _object(self, node: SchemaNode, value: Dict[str, Any], path: JsonPath, collect: bool) -> bool:
        ok = True
        for first, second in node.exclusive:
            if first in value and second in value:
                if not collect:
                    return False
                self.fail("both-spellings", path + (second,), node, value, (first, second))
                ok = False
        if node.required is not None:
            for key in node.required:
                if key not in value:
                    if not collect:
                        return False
                    self.fail("required", path, node, value, key)
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
                    self.fail("unknown-field", path + (key,), node, value, key)
                    ok = False
                    continue
                sub = extra
            if not self.check(sub, item, path + (key,), collect):
                ok = False
                if not collect:
                    return False
        return ok

    def _any_of(self, node: SchemaNode, value: Any, path: JsonPath, collect: bool) -> bool:
        branches = node.any_of or ()
        for sub in branches:
            if self.check(sub, value, path, False):
                return True
        if not collect:
            return False
        # Report through the branch meant for this kind of value (e.g. the object branch of
        # "null or Transform"), so the failure is about the real mistake.
        kind = json_type(value)
        fitting = [b for b in branches if b.types is None or _type_ok(value, kind, b.types)]
        if len(fitting) == 1:
            self.check(fitting[0], value, path, True)
        else:
            self.fail("any-of", path, node, value)
        return False


class Evaluation:
    __slots__ = ("failures", "defs", "truncated", "too_deep")

    def __init__(self, failures: List[Failure], defs: Defs, truncated: bool, too_deep: bool) -> None:
        self.failures = failures
        self.defs = defs
        self.truncated = truncated  # stopped at the limit: more failures were not looked for
        self.too_deep = too_deep  # Python's recursion limit was reached


def evaluate(document: Any, limit: int = MAX_PROBLEMS) -> Evaluation:
    """Every failure of `document` against the pipeline-spec schema (at most `limit`)."""
    evaluator = Evaluator(load(), limit)
    truncated = too_deep = False
    try:
        evaluator.check(evaluator.defs["CreatePipelineRequest"], document, (), True)
    except RecursionError:
        too_deep = True
    except Enough:
        truncated = True
    return Evaluation(evaluator.failures, evaluator.defs, truncated, too_deep)
