"""Pipeline spec templates: `{{ name }}` placeholders inside string values.

Rendering works on the parsed document, string leaf by string leaf, never on the file's
text: a value (a branch name, say) can therefore never add a key or end a string early.
Mapping keys are not rendered.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from pachhook.core.diagnostics import ERROR, JsonPath, Problem

PLACEHOLDERS = ("commit", "short_commit", "tag", "branch")

# `{{ name }}` with optional spaces. Only identifiers count: `{{.Names}}` in a shell
# command (docker's own templates) is left alone.
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

_SAMPLE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def sample_values() -> Dict[str, str]:
    """Values that look like real ones, for validating a template before any commit exists."""
    return {
        "commit": _SAMPLE_COMMIT,
        "short_commit": _SAMPLE_COMMIT[:7],
        "tag": _SAMPLE_COMMIT,
        "branch": "main",
    }


def has_placeholder(text: str) -> bool:
    return PLACEHOLDER.search(text) is not None


def render_string(text: str, values: Dict[str, str]) -> Tuple[str, List[str]]:
    """Fill the placeholders of one string; returns it and the messages of what failed."""
    problems: List[str] = []
    unknown = set()  # each unknown name reported once: a string may repeat it a million times

    def fill(match: "re.Match[str]") -> str:
        name = match.group(1)
        if name not in PLACEHOLDERS:
            if name in unknown:
                return match.group(0)
            unknown.add(name)
            problems.append(
                f"unknown placeholder {match.group(0)}: the placeholders are "
                + ", ".join("{{ %s }}" % known for known in PLACEHOLDERS)
            )
            return match.group(0)
        if name not in values:
            problems.append(f"no value for placeholder {match.group(0)}")
            return match.group(0)
        return values[name]

    return PLACEHOLDER.sub(fill, text), problems


def render(value: Any, values: Dict[str, str]) -> Tuple[Any, List[Problem]]:
    """Return a copy of `value` with the placeholders of its string leaves filled.

    Iterative, so a deeply nested value cannot exhaust the stack.
    """
    problems: List[Problem] = []
    if isinstance(value, str):
        return _render_leaf(value, (), values, problems), problems
    if not isinstance(value, (dict, list)):
        return value, problems
    root: Any = {} if isinstance(value, dict) else []
    stack: List[Tuple[Any, Any, JsonPath]] = [(value, root, ())]
    while stack:
        source, target, path = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, child in items:
            if isinstance(child, (dict, list)):
                copy: Any = {} if isinstance(child, dict) else []
                stack.append((child, copy, path + (key,)))
            elif isinstance(child, str):
                copy = _render_leaf(child, path + (key,), values, problems)
            else:
                copy = child
            if isinstance(target, dict):
                target[key] = copy
            else:
                target.append(copy)
    return root, problems


def _render_leaf(text: str, path: JsonPath, values: Dict[str, str], problems: List[Problem]) -> str:
    if "{{" not in text:
        return text
    rendered, messages = render_string(text, values)
    problems.extend(Problem(path, message, ERROR, "unknown-placeholder") for message in messages)
    return rendered


def image_to_build(document: Any, values: Optional[Dict[str, str]] = None) -> Optional[str]:
    """The image repository pachhook builds for this template, or None.

    That is `transform.image` when it holds a placeholder, without its tag or digest:
    `registry.example.com/team/edges:{{ tag }}` -> `registry.example.com/team/edges`.
    With `values`, placeholders left in the repository part are filled.
    """
    if not isinstance(document, dict):
        return None
    transform = document.get("transform")
    image = transform.get("image") if isinstance(transform, dict) else None
    if not isinstance(image, str) or not has_placeholder(image):
        return None
    repository = image.split("@", 1)[0]
    slash = repository.rfind("/")
    colon = repository.find(":", slash + 1)
    if colon != -1:
        repository = repository[:colon]
    if values is not None:
        repository, _ = render_string(repository, values)
    return repository
