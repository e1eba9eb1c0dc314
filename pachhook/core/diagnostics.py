"""Problems found in a template, and the records that locate them in a file."""

from __future__ import annotations

import json
import re

from pachhook.core.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (~5 ms) and pathlib stay off the hooks' paths: annotations only
    from typing import Any, Tuple, Union

    JsonPath = Tuple[Union[str, int], ...]
else:
    JsonPath = tuple  # at run time only a name to import: its shape is for type checkers


ERROR = "error"
WARNING = "warning"


class Problem(Record):
    """A finding about a parsed value, located by its JSON path inside one document."""

    __slots__ = ("path", "message", "severity", "rule")

    def __init__(self, path: JsonPath, message: str, severity: str = ERROR, rule: str = "") -> None:
        self.path = path
        self.message = message
        self.severity = severity
        self.rule = rule  # short stable id, e.g. "unknown-field", for JSON output and docs


class Diagnostic(Record):
    """A problem placed in a file: what every output format prints."""

    __slots__ = ("file", "line", "column", "message", "severity", "json_path", "rule", "document")

    def __init__(
        self,
        file: str,
        line: int,
        column: int,
        message: str,
        severity: str = ERROR,
        json_path: str = "",
        rule: str = "",
        document: int = 0,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.message = message
        self.severity = severity
        self.json_path = json_path  # "input.cross[1].pfs.repo"; empty for file-level problems
        self.rule = rule
        self.document = document  # 1-based document index in a multi-spec file; 0 when not applicable

    def replace(self, **changes: Any) -> "Diagnostic":
        """A copy with `changes` applied (what dataclasses.replace did)."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return Diagnostic(**values)


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
