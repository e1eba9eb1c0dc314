"""Check one pipeline spec against pachhook's JSON Schema: evaluation, then wording.

`pachhook.spec.evaluate` finds which keywords fail (without the jsonschema library, which
costs more to import than a hook may take); `pachhook.spec.wording` says each failure so a
person can act on it. `check` is the one entry point the validator uses.
"""

from __future__ import annotations

from pachhook.core.diagnostics import ERROR, Problem
from pachhook.spec.evaluate import MAX_PROBLEMS, SCHEMA_PATH, Schema, SchemaError, evaluate, json_type, load
from pachhook.spec.wording import describe, duration_hint, not_a_mapping, quote_hint, word

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (~5 ms) and pathlib stay off the hooks' paths: annotations only
    from typing import Any, List

__all__ = [
    "MAX_PROBLEMS",
    "SCHEMA_PATH",
    "SchemaError",
    "check",
    "describe",
    "duration_hint",
    "json_type",
    "not_a_mapping",
    "quote_hint",
]


def _load() -> Schema:
    """The compiled schema (tests call compile_all() on it)."""
    return load()


def check(document: Any) -> List[Problem]:
    """Check one parsed, rendered spec document against the pipeline-spec schema.

    Returns the problems found, each located by JSON path; never raises on any value.
    """
    if not isinstance(document, dict):
        return [not_a_mapping(document)]
    evaluation = evaluate(document)
    if evaluation.too_deep:
        return [Problem((), "the spec nests too deeply to check", ERROR, "too-deep")]
    problems = [word(failure, evaluation.defs, index) for index, failure in enumerate(evaluation.failures)]
    problems = _dedupe(problems)
    if evaluation.truncated:
        summary = f"more problems in this spec are not listed (the first {MAX_PROBLEMS} are)"
        problems.append(Problem((), summary, ERROR, "too-many-problems"))
    return problems


def _dedupe(problems: List[Problem]) -> List[Problem]:
    seen = set()
    out = []
    for p in problems:
        key = (p.path, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
