"""Problems found in a template, and the records that locate them in a file."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Tuple, Union

JsonPath = Tuple[Union[str, int], ...]

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """A finding about a parsed value, located by its JSON path inside one document."""

    path: JsonPath
    message: str
    severity: str = ERROR
    rule: str = ""  # short stable id, e.g. "unknown-field", for JSON output and docs


@dataclass(frozen=True)
class Diagnostic:
    """A problem placed in a file: what every output format prints."""

    file: str
    line: int
    column: int
    message: str
    severity: str = ERROR
    json_path: str = ""  # "input.cross[1].pfs.repo"; empty for file-level problems
    rule: str = ""
    document: int = 0  # 1-based document index in a multi-spec file; 0 when not applicable


LONGEST_SHOWN_KEY = 64  # a longer key is shortened in paths: a diagnostic stays a readable line


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_$-]+")


def format_json_path(path: JsonPath) -> str:
    """Render ("input", "cross", 1, "pfs") as input.cross[1].pfs.

    A key that is not a plain word (`example.com/team`, `a b`, "") is written as a JSON
    string in brackets, so the path reads one way only: metadata.labels["example.com/team"].
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if len(text) > LONGEST_SHOWN_KEY:
                text = text[:LONGEST_SHOWN_KEY] + "..."
            if _PLAIN_KEY.fullmatch(text):
                out += f".{text}" if out else text
            else:
                out += "[" + json.dumps(text, ensure_ascii=False) + "]"
    return out
