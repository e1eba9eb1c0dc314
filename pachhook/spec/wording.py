"""Messages for schema failures: what `pachhook.spec.evaluate` found, said so a person can act.

Unknown fields get a "did you mean" or the field they belong under, fields removed in 2.0
are named as such, durations are rewritten into the seconds form pachctl 2.7+ wants, and a
number where a string belongs says to quote it. Kept apart from the evaluation so either
can change without the other (issue 9).
"""

from __future__ import annotations

import json
import re

from pachhook.core.diagnostics import ERROR, LONGEST_SHOWN_KEY, JsonPath, Problem, format_json_path
from pachhook.spec.evaluate import MAX_DEPTH, Defs, Failure, SchemaNode, json_type

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (~5 ms) and pathlib stay off the hooks' paths: annotations only
    from typing import Any, Dict, List, Optional

# The rule ids of what the schema itself says about a field, a type, a value or a form (the
# ones `validate --cluster` compares with the cluster's schema). too-deep and not-a-mapping,
# also worded here, are limits and shapes the checks share with pachhook.spec.rules.
SCHEMA_RULE_IDS = frozenset(
    {"unknown-field", "removed-field", "both-spellings", "type", "enum", "duration", "timestamp", "one-of", "schema"}
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


def word(failure: Failure, defs: Defs, reported: int = 0) -> Problem:
    """The problem a person reads for one failure; `reported` problems came before it."""
    kind, path, node, value = failure.kind, failure.path, failure.node, failure.value
    if kind == "type":
        return _type_error(node, value, path)
    if kind == "described":
        return _described_error(node, value, path)
    if kind == "enum":
        names = ", ".join(f"'{n}'" for n in sorted(node.enum or ()))
        return Problem(path, f"{_subject(path)} must be one of {names}, got {describe(value)}", ERROR, "enum")
    if kind == "pattern":
        pattern = node.pattern.pattern if node.pattern is not None else ""
        return Problem(path, f"{_subject(path)} must match {pattern}, got {describe(value)}", ERROR, "schema")
    if kind == "minimum":
        message = f"{_subject(path)} must be at least {node.minimum}, got {_number_text(value)}"
        return Problem(path, message, ERROR, "schema")
    if kind == "maximum":
        message = f"{_subject(path)} must be at most {node.maximum}, got {_number_text(value)}"
        return Problem(path, message, ERROR, "schema")
    if kind == "not":
        return _not_error(node, path)
    if kind == "false":
        return Problem(path, f"{_subject(path)} is not allowed here", ERROR, "schema")
    if kind == "too-deep":
        message = f"the spec nests more than {MAX_DEPTH} levels deep; it cannot be a pipeline spec"
        return Problem(path, message, ERROR, "too-deep")
    if kind == "required":
        return Problem(path, f"missing required field '{failure.detail}' {_where(path)}", ERROR, "schema")
    if kind == "both-spellings":
        first, second = failure.detail
        message = f"both '{first}' and '{second}' are set {_where(path[:-1])}; keep one"
        return Problem(path, message, ERROR, "both-spellings")
    if kind == "unknown-field":
        return _unknown_field(node, failure.detail, path[:-1], defs, reported)
    # "any-of": no branch fits this kind of value
    wanted = [b.description or _expected_types(b) for b in node.any_of or ()]
    message = f"{_subject(path)} must be {' or '.join(w for w in wanted if w)}, got {describe(value)}"
    return Problem(path, message, ERROR, "type")


def _type_error(node: SchemaNode, value: Any, path: JsonPath) -> Problem:
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
    return Problem(path, message, ERROR, "type")


def _described_error(target: SchemaNode, value: Any, path: JsonPath) -> Problem:
    message = f"{_subject(path)} must be {target.description}, got {describe(value)}"
    rule = "type"
    if target.name == "duration":
        rule = "duration"
        hint = duration_hint(value)
        message += "; pachctl 2.7+ reads only seconds" + (f": write {json.dumps(hint)}" if hint else "")
    elif target.name == "double" and isinstance(value, str):
        cores = _cpu_hint(value)
        if cores is not None:
            message += f"; write {cores} (a number of CPU cores)"
    elif target.name == "timestamp":
        rule = "timestamp"
    elif target.name in ("TolerationOperator", "TaintEffect", "FileFormatType"):
        rule = "enum"
    return Problem(path, message, ERROR, rule)


def _not_error(node: SchemaNode, path: JsonPath) -> Problem:
    inner = node.not_
    if inner is not None and inner.required is not None and len(inner.required) == 2 and inner.properties is None:
        first, second = inner.required
        message = f"both '{first}' and '{second}' are set {_where(path)}; keep one"
        return Problem(path + (second,), message, ERROR, "both-spellings")
    return Problem(path, node.description or f"{_subject(path)} matches a form that is not allowed", ERROR, "one-of")


def _unknown_field(node: SchemaNode, key: Any, path: JsonPath, defs: Defs, reported: int) -> Problem:
    if not isinstance(key, str):  # YAML can give non-string keys; JSON never does
        message = f"field names are strings, but {describe(key)} is used as a key {_where(path)}"
        return Problem(path + (key,), message, ERROR, "unknown-field")
    removed = _REMOVED.get(node.name or "", {}).get(key)
    if removed is not None:
        message = f"'{key}' was removed in Pachyderm 2.0; {_REMOVED_HINTS[removed]}"
        return Problem(path + (key,), message, ERROR, "removed-field")
    known = [k for k in (node.properties or {}) if k != "$schema"]
    message = f"unknown field '{_shown_key(key)}' {_where(path)}"
    if reported >= _SUGGESTION_LIMIT or len(key) > _LONGEST_FIELD:
        # hostile input (thousands of unknown keys, or huge ones): suggestions cost ~1 ms
        # each, and no field of the spec is that long anyway
        return Problem(path + (key,), message, ERROR, "unknown-field")
    homes = [] if _folded_match(key, known) else _field_homes(node, key, defs)
    if len(homes) == 1:
        message += f"; it belongs under '{homes[0]}' ({homes[0]}.{key})"
    elif homes:
        message += "; it belongs under one of " + ", ".join(f"'{h}'" for h in homes)
    else:
        guess = _suggest(key, known)
        if guess:
            message += f"; did you mean '{guess}'?"
    return Problem(path + (key,), message, ERROR, "unknown-field")


def _field_homes(node: SchemaNode, key: str, defs: Defs) -> List[str]:
    """Child fields of node whose own fields include key: a field written one level too high."""
    homes: Dict[str, str] = {}  # $defs name -> first field spelling that leads there
    for name, sub in (node.properties or {}).items():
        for target in _refs_of(sub):
            if key != "$schema" and key in (defs[target].properties or {}):
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


def _refs_of(node: SchemaNode) -> List[str]:
    refs = [node.ref] if node.ref else []
    for sub in node.any_of or ():
        if sub.ref:
            refs.append(sub.ref)
    return refs


def _expected_types(node: SchemaNode) -> str:
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


def not_a_mapping(document: Any) -> Problem:
    """The one problem reported for a document that is not a mapping (shared with rules.check)."""
    return Problem(
        (),
        f"a pipeline spec must be a mapping of fields (a JSON object), got {describe(document)}",
        ERROR,
        "not-a-mapping",
    )
