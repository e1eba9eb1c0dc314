"""Pipeline spec templates: `{{ name }}` placeholders inside string values.

Rendering works on the parsed document, string leaf by string leaf, never on the file's
text: a value (a branch name, say) can therefore never add a key or end a string early.
Mapping keys are not rendered.
"""

from __future__ import annotations

import re

from pachhook.core.diagnostics import ERROR, JsonPath, Problem

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (~5 ms) and pathlib stay off the hooks' paths: annotations only
    from typing import Any, Dict, List, Optional, Tuple

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
        if isinstance(source, list):
            kinds = set(map(type, source))  # at C speed: a list may hold a million values
            joined = "\0".join(_strings(source)) if str in kinds else ""
            if not kinds & _CONTAINERS and "{{" not in joined and "}}" not in joined:
                target.extend(source)  # nothing to fill: copied at once
                continue
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, child in items:
            if isinstance(key, str) and "{{" in key:
                _placeholder_in_key(key, path, problems)
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


_CONTAINERS = frozenset({dict, list})


def _strings(values: List[Any]) -> List[str]:
    return [value for value in values if type(value) is str]


def _placeholder_in_key(key: str, path: JsonPath, problems: List[Problem]) -> None:
    # keys are never rendered (a value must not add a field), so the braces would reach
    # pachctl as written
    match = PLACEHOLDER.search(key)
    if match is not None:
        message = (
            f"placeholders are filled in string values only, not in keys: {match.group(0)}"
            " stays as written in this key; use a fixed key"
        )
        problems.append(Problem(path + (key,), message, ERROR, "placeholder-in-key"))


def _render_leaf(text: str, path: JsonPath, values: Dict[str, str], problems: List[Problem]) -> str:
    if "{{" not in text and "}}" not in text:
        return text
    if path != IMAGE_PATH:  # the image has its own, wider check (image_template_problems)
        broken = broken_placeholder(text)
        if broken:
            problems.append(Problem(path, broken, ERROR, "malformed-placeholder"))
    if "{{" not in text:
        return text
    rendered, messages = render_string(text, values)
    problems.extend(Problem(path, message, ERROR, "unknown-placeholder") for message in messages)
    return rendered


IMAGE_PATH: JsonPath = ("transform", "image")

# A placeholder with a brace too few on one side (`{{ commit }`, `{ tag }}`, `{{ branch`,
# `short_commit }}`): left in the spec as text, never filled. Outside the image, braces are
# often the user's own (shell `${TAG}`, find's `{}`, docker's `{{.Names}}`, Go and Helm
# templates' `{{ .tag }}` and `{{ $tag }}`), so only the bare name of a placeholder counts.
_NAMES = "|".join(sorted(PLACEHOLDERS, key=len, reverse=True))
_BROKEN = re.compile(
    r"\{\{\s*(%s)\b\s*\}?(?!\})|(?<![\w.$\{])\{?\s*\b(%s)\s*\}\}" % (_NAMES, _NAMES),
    re.IGNORECASE,
)


def broken_placeholder(text: str) -> str:
    """The message for the first malformed placeholder in text, or "" when there is none."""
    without = PLACEHOLDER.sub("", text)
    found = _BROKEN.search(without)
    if found is None:
        return ""
    name = (found.group(1) or found.group(2)).lower()
    written = found.group(0).strip()
    return f"{written!r} is not a placeholder and would reach the cluster as written: write {{{{ {name} }}}}"


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


# Near misses of a placeholder (`{ tag }`, `{{ tag}`, `tag }}`, `${TAG}`): any brace left in an
# image once the real placeholders are taken out, since an image reference holds none.
_NEAR_MISS = re.compile(r"\$?\{+[^{}]*\}*|[^{}/:@]*\}+")
# The placeholder that names the pushed tag, by `tag` form of the configuration.
_TAG_PLACEHOLDERS = {"full": ("tag", "commit"), "short": ("tag", "short_commit")}


def image_template_problems(document: Any, tag_form: str = "full") -> List[Problem]:
    """What makes the image of a template undeliverable: all errors, on `transform.image`.

    Delivery pushes the image it builds as REPOSITORY:TAG, TAG being the full commit SHA
    (or its first 7 characters with `tag = "short"`), and applies the spec rendered with
    that tag. So the repository part cannot hold a placeholder (nothing renders it before
    the push), the tag must be exactly the placeholder of the pushed tag, and a malformed
    placeholder, left in the image as text, names an image that does not exist.
    """
    if not isinstance(document, dict):
        return []
    transform = document.get("transform")
    image = transform.get("image") if isinstance(transform, dict) else None
    if not isinstance(image, str):
        return []
    path: JsonPath = ("transform", "image")
    shown = image if len(image) <= 200 else image[:200] + "…"
    problems: List[Problem] = []
    without = PLACEHOLDER.sub("", image)
    for near in _NEAR_MISS.finditer(without):
        word = re.search(r"[A-Za-z_][A-Za-z0-9_]*", near.group(0))
        meant = word.group(0).lower() if word and word.group(0).lower() in PLACEHOLDERS else "tag"
        problems.append(
            Problem(
                path,
                f"image {shown!r}: {near.group(0)!r} is not a placeholder: write {{{{ {meant} }}}}"
                " (two braces on each side)",
                ERROR,
                "malformed-placeholder",
            )
        )
        return problems  # one is enough: the others are the same mistake
    if not has_placeholder(image):
        return problems  # a fixed image: deployed as written, nothing built
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.find(":", slash + 1)
    if (
        has_placeholder(name[: slash + 1])
        or (colon == -1 and has_placeholder(name))
        or (colon != -1 and has_placeholder(name[slash + 1 : colon]))
    ):
        placeholder = PLACEHOLDER.search(name[:colon] if colon != -1 else name)
        problems.append(
            Problem(
                path,
                f"image {shown!r}: placeholder {placeholder.group(0) if placeholder else ''} in the image"
                " repository: pachhook builds and pushes one repository per image, so placeholders go"
                " in the tag only (REPOSITORY:{{ tag }})",
                ERROR,
                "image-repository-placeholder",
            )
        )
        return problems
    if colon == -1 or "@" in image:
        return problems
    tag = name[colon + 1 :]
    allowed = _TAG_PLACEHOLDERS.get(tag_form, _TAG_PLACEHOLDERS["full"])
    whole = PLACEHOLDER.fullmatch(tag)
    if whole is None or whole.group(1) not in allowed:
        if whole is not None and whole.group(1) not in PLACEHOLDERS:
            return problems  # an unknown placeholder: reported as such by render()
        pushed = "its first 7 characters" if tag_form == "short" else "the full commit SHA"
        problems.append(
            Problem(
                path,
                f"image {shown!r}: the tag {tag!r} can never be deployed: pachhook pushes the image"
                f" tagged with {pushed}, so write the tag as {{{{ tag }}}}"
                + (' (tag = "short" in the configuration for 7-character tags)' if tag_form != "short" else ""),
                ERROR,
                "image-tag-form",
            )
        )
    return problems
