"""Text from outside (build output, registry and engine answers, pachctl messages) made safe to show.

Such text may carry terminal control sequences (colours, cursor moves, a title change, even a
sequence that rewrites what the screen shows) and may be of any length. Everything pachhook
prints or stores from outside passes through `clean` (kept lines) or `one_line` (a message).
"""

from __future__ import annotations

import re

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), other two-character ESC sequences,
# then any remaining C0/C1 control character except tab and newline.
_SEQUENCES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[@-Z\\-_]?"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

DEFAULT_LIMIT = 2000  # characters of one message
ELLIPSIS = " …"


def strip_controls(text: str) -> str:
    """text without terminal control sequences or control characters (tab and newline kept)."""
    text = _SEQUENCES.sub("", text.replace("\r\n", "\n"))
    return _CONTROLS.sub("", text.replace("\r", "\n"))


def bound(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """text cut to at most limit characters, the cut marked with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(ELLIPSIS))] + ELLIPSIS


def clean(text: object, limit: int = DEFAULT_LIMIT) -> str:
    """Outside text for a log line: no control sequences, tabs as spaces, bounded, no trailing blanks."""
    return bound(strip_controls(str(text)).replace("\t", " ").rstrip(), limit)


def one_line(text: object, limit: int = DEFAULT_LIMIT) -> str:
    """Outside text for a one-line message: no control sequences, whitespace runs as one space, bounded."""
    return bound(" ".join(strip_controls(str(text)).split()), limit)
