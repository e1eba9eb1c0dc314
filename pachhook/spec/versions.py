"""Fields newer than the Pachyderm version a team targets.

pachctl rejects a field its protobuf definitions do not know (2.8+: `unknown field`), so a
spec that uses `maximum_expected_uptime` fails against a 2.8 cluster although it passes
pachhook's schema, which knows the newest fields. `check(document, version)` names every
such field with the version that brought it. Versions come from the field lists of
`src/pps/pps.proto` at each release tag (reference/pachyderm-spec-facts.md, §1.1, §1e).
"""

from __future__ import annotations

import re

from pachhook.core.diagnostics import ERROR, JsonPath, Problem

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (~5 ms) and pathlib stay off the hooks' paths: annotations only
    from typing import Any, Callable, Dict, List, Optional, Tuple

    Version = Tuple[int, int]
else:
    Version = tuple  # at run time only a name to import: its shape is for type checkers


NEWEST: Version = (2, 12)  # the newest version pachhook's schema describes
OLDEST: Version = (2, 0)  # pachhook checks the 2.x spec only

# Where a field sits (a $defs name of the schema) -> proto field name -> first version.
_SINCE: Dict[str, Dict[str, Version]] = {
    "CreatePipelineRequest": {
        "tolerations": (2, 5),
        "sidecar_resource_requests": (2, 6),
        "determined": (2, 7),
        "maximum_expected_uptime": (2, 9),
    },
    "Pipeline": {"project": (2, 5)},
    "Transform": {"memory_volume": (2, 4), "datum_batching": (2, 5)},
    "Egress": {"object_storage": (2, 2), "sql_database": (2, 2)},
    "PFSInput": {"project": (2, 5), "propagation_spec": (2, 12), "reference": (2, 12)},
    "CronInput": {"project": (2, 5)},
}

_VERSION_TEXT = re.compile(r"v?([0-9]+)\.([0-9]+)(?:\.[0-9]+)?(?:[-+][0-9A-Za-z.-]+)?")


def parse_version(text: str) -> Optional[Version]:
    """(major, minor) of "2.9", "2.9.3" or "v2.12.0-rc.1"; None for anything else."""
    match = _VERSION_TEXT.fullmatch(text.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def _snake(key: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)


def check(document: Any, version: Optional[Version]) -> List[Problem]:
    """Fields of `document` newer than `version` (None: the newest, so nothing)."""
    if version is None or version >= NEWEST or not isinstance(document, dict):
        return []
    problems: List[Problem] = []
    shown = f"{version[0]}.{version[1]}"

    def look(value: Any, where: str, path: JsonPath) -> None:
        if not isinstance(value, dict):
            return
        since = _SINCE.get(where, {})
        for key in value:
            if not isinstance(key, str):
                continue
            first = since.get(_snake(key))
            if first is not None and first > version:
                problems.append(
                    Problem(
                        path + (key,),
                        f"'{key}' needs Pachyderm {first[0]}.{first[1]}, and pachyderm_version is {shown}:"
                        f" {shown} does not know it (pachctl refuses it as an unknown field, 2.7 drops it"
                        " silently); delete it or raise pachyderm_version",
                        ERROR,
                        "newer-field",
                    )
                )

    look(document, "CreatePipelineRequest", ())
    for key, value in document.items():
        field = _snake(key) if isinstance(key, str) else ""
        if field in ("pipeline", "transform", "egress"):
            look(value, {"pipeline": "Pipeline", "transform": "Transform", "egress": "Egress"}[field], (key,))
        elif field == "input":
            _inputs(value, (key,), look)
    return problems


def _inputs(node: Any, path: JsonPath, look: Callable[[Any, str, JsonPath], None]) -> None:
    """Every pfs and cron node of an input tree (iterative: the tree may be deep)."""
    stack: List[Tuple[Any, JsonPath]] = [(node, path)]
    while stack:
        current, where = stack.pop()
        if not isinstance(current, dict):
            continue
        for key, value in current.items():
            if key == "pfs":
                look(value, "PFSInput", where + (key,))
            elif key == "cron":
                look(value, "CronInput", where + (key,))
            elif key in ("cross", "union", "join", "group") and isinstance(value, list):
                stack.extend((child, where + (key, index)) for index, child in enumerate(value))
