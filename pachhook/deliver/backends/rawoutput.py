"""What `pachctl ... --raw` prints, read safely: one JSON object after another, and outside
text bounded before it is shown. Shared by the update step's stamping and provenance."""

from __future__ import annotations

import json
from typing import Any, Dict, List

from pachhook.core.sanitize import one_line

TEXT_LIMIT = 300


class ClusterError(Exception):
    """The cluster could not answer; str(error) is one line for the user."""

    def __init__(self, message: str) -> None:
        # Messages quote pachctl and pachd: outside text, made safe here once for every
        # caller, as BackendError does.
        super().__init__(one_line(message))


def clean(value: Any, limit: int = TEXT_LIMIT) -> str:
    """Outside text made safe for a terminal: no control sequences, one line, bounded."""
    return one_line("" if value is None else value, limit)


def part(message: Any, key: str) -> Dict[str, Any]:
    """`message[key]` when it is an object, else {}: protojson leaves empty messages out."""
    value = message.get(key) if isinstance(message, dict) else None
    return value if isinstance(value, dict) else {}


def messages(text: str) -> List[Dict[str, Any]]:
    """The JSON objects pachctl --raw prints one after another (indented or one per line)."""
    decoder = json.JSONDecoder()
    found: List[Dict[str, Any]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        try:
            value, position = decoder.raw_decode(text, position)
        except ValueError:
            raise ClusterError("pachctl printed something that is not JSON") from None
        if isinstance(value, dict):
            found.append(value)
    return found
