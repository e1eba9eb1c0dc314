"""Is a file that only the naming conventions point at really a pipeline spec?

`pipeline.yaml` is a common name: Buildkite reads `.buildkite/pipeline.yml`, and many
applications keep a `pipeline.yaml` of their own. A file matched only by the default
name conventions is taken for a template when it looks like one: a `pipeline.name` plus
a `transform`, `spout` or `service`. Templates the configuration names are always checked.

Light on purpose (the hooks call it): plain string tests, `re` and the loader only for a
candidate file.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    from typing import Any, Sequence

_BODIES = ("transform", "spout", "service")
_CONVENTIONAL_EXTENSIONS = ("json", "yaml", "yml")
# For a file the loader cannot read: top-level YAML keys or JSON members that make it a spec
# gone wrong (its error is then reported) rather than someone else's file.
_SPEC_KEY = rb'^(?:pipeline|"pipeline")\s*:|"pipeline"\s*:\s*\{'
_BODY_KEY = rb'^(?:transform|spout|service)\s*:|"(?:transform|spout|service)"\s*:'


def has_conventional_name(path: str) -> bool:
    """Whether the last name of `path` (`/` separated) is one DEFAULT_TEMPLATE_GLOBS give JSON
    and YAML: `pipeline.json`, `pipeline.yaml`, `pipeline.yml`, or `*.pipeline.` one of those."""
    stem, dot, extension = path.rpartition("/")[2].rpartition(".")
    return bool(dot) and extension in _CONVENTIONAL_EXTENSIONS and (stem == "pipeline" or stem.endswith(".pipeline"))


def looks_like_spec(value: Any) -> bool:
    """A mapping with `pipeline.name` and a `transform`, `spout` or `service`."""
    if not isinstance(value, dict):
        return False
    pipeline = value.get("pipeline")
    return isinstance(pipeline, dict) and "name" in pipeline and any(key in value for key in _BODIES)


def looks_like_template(name: str, data: bytes) -> bool:
    """Whether the bytes of `name` hold a pipeline spec (any of its documents), or a broken one."""
    from pachhook.spec.loader import load_bytes

    loaded = load_bytes(name, data)
    if any(looks_like_spec(document.value) for document in loaded.documents):
        return True
    if loaded.documents:
        return False  # read fine, and nothing in it is a pipeline spec
    # Unreadable (a syntax error, a refused construct): a spec only if its keys say so.
    import re

    return bool(re.search(_SPEC_KEY, data, re.MULTILINE) and re.search(_BODY_KEY, data, re.MULTILINE))


def by_convention_only(path: str, configured: Sequence[str], matches: Any) -> bool:
    """Whether `path` is a template only because of its conventional name.

    `configured` are the configuration's template globs; `matches(globs, path)` tells
    whether any of `globs` matches (the caller's glob matcher). The default globs are the
    conventions even when a configuration lists them again.
    """
    from pachhook.core.config import DEFAULT_TEMPLATE_GLOBS

    if not has_conventional_name(path):
        return False
    chosen = [glob for glob in configured if glob not in DEFAULT_TEMPLATE_GLOBS]
    return not (chosen and matches(chosen, path))
