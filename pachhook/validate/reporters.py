"""Output formats for diagnostics: text for people, JSON for tools, GitHub annotations."""

from __future__ import annotations

import json

from pachhook.core.diagnostics import ERROR, Diagnostic

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing (~5 ms) and pathlib stay off the hooks' paths: annotations only
    from typing import Iterable, List

FORMATS = ("text", "json", "github")


# Line breaks and other control characters a file name, key or value may carry, escaped
# (not dropped, as pachhook.core.sanitize does with outside text: a diagnostic must show the
# name as it is): one problem must stay one line, and no input may forge a line of its own.
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, 0x85) if code != 0x09}
_CONTROLS.update({0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def escape_controls(text: str) -> str:
    """`text` with line breaks and control characters written as escapes."""
    return text.translate(_CONTROLS)


def format_text(diagnostics: Iterable[Diagnostic]) -> str:
    """One line each: `file:line:col: error: message (json.path)`."""
    lines = []
    for item in diagnostics:
        where = f" ({item.json_path})" if item.json_path else ""
        lines.append(escape_controls(f"{item.file}:{item.line}:{item.column}: {item.severity}: {item.message}{where}"))
    return "\n".join(lines)


def format_json(diagnostics: Iterable[Diagnostic]) -> str:
    """A JSON list of objects, one per diagnostic, with stable field names."""
    records = [
        {
            "file": item.file,
            "line": item.line,
            "column": item.column,
            "severity": item.severity,
            "message": item.message,
            "json_path": item.json_path,
            "rule": item.rule,
            "document": item.document,
        }
        for item in diagnostics
    ]
    return json.dumps(records, indent=2)


def format_github(diagnostics: Iterable[Diagnostic]) -> str:
    """GitHub Actions workflow commands, so problems show up on the pull request's lines."""
    lines = []
    for item in diagnostics:
        command = "error" if item.severity == ERROR else "warning"
        properties = ",".join(
            f"{key}={_escape_property(str(value))}"
            for key, value in (
                ("file", item.file),
                ("line", item.line),
                ("col", item.column),
                ("title", f"pachhook {item.rule}" if item.rule else "pachhook"),
            )
        )
        message = item.message + (f" ({item.json_path})" if item.json_path else "")
        lines.append(f"::{command} {properties}::{_escape_data(message)}")
    return "\n".join(lines)


def _escape_data(text: str) -> str:
    # the escapes GitHub's runner decodes in a workflow command's message
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render(diagnostics: List[Diagnostic], output_format: str) -> str:
    if output_format == "json":
        return format_json(diagnostics)
    if output_format == "github":
        return format_github(diagnostics)
    return format_text(diagnostics)


def summary(diagnostics: List[Diagnostic], files: int) -> str:
    """The closing line of the text format, e.g. `2 errors, 1 warning in 3 files`."""
    errors = sum(1 for item in diagnostics if item.severity == ERROR)
    warnings = len(diagnostics) - errors
    return (
        f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning"
        f"{'s' if warnings != 1 else ''} in {files} file{'s' if files != 1 else ''}"
    )
