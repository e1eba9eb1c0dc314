"""What an executable said about itself (its version, what it can do), remembered per file.

Asking a tool about itself is a process start, and for the Go tools pachhook drives (pachctl,
the docker CLI) a Go runtime start: tens of milliseconds that every delivery would pay again
for an answer that depends only on the files involved. So an answer is kept under a key made
of those files: their real paths (a symlink switched to another file is another key),
modification times and sizes. It is kept for the life of the process, and across processes
in a small JSON file per topic (`<topic>.json`) in a folder the caller names (the delivery
steps give the queue's, `<git common dir>/pachhook`). A file replaced or upgraded on disk
makes a new key, and the tool is asked again.

The file is a cache only: unreadable, damaged or unwritable, it is a miss, never an error.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, TypeVar

FileKey = Tuple[str, int, int]  # real path, st_mtime_ns, st_size (0, 0 when absent or unreadable)
T = TypeVar("T")

KEPT = 8  # answers remembered per topic in the file (a repository rarely names more than one tool)

_IN_PROCESS: Dict[Tuple[str, str], Any] = {}


def key_of(path: str) -> FileKey:
    """The file's real path, mtime and size; an absent or unreadable file gets (path, 0, 0)."""
    real = os.path.realpath(path)
    try:
        status = os.stat(real)
    except OSError:
        return real, 0, 0
    return real, status.st_mtime_ns, status.st_size


def keys_of(paths: Sequence[str]) -> Tuple[FileKey, ...]:
    """key_of for each file an answer depends on (absent ones too: one appearing changes the key)."""
    return tuple(key_of(path) for path in paths)


def recall(topic: str, key: Any, parse: Callable[[Any], Optional[T]], folder: Optional[str] = None) -> Optional[T]:
    """The answer remembered on `topic` for `key`: in this process, else in `folder`'s file.

    `parse` turns the stored JSON back into the answer, or None when it is not shaped like one
    (a damaged or foreign file is a miss).
    """
    text = _text(key)
    if (topic, text) in _IN_PROCESS:
        return _IN_PROCESS[(topic, text)]
    if folder is None:
        return None
    stored = _read(topic, folder).get(text)
    found = parse(stored) if stored is not None else None
    if found is not None:
        _IN_PROCESS[(topic, text)] = found
    return found


def remember(topic: str, key: Any, answer: Any, folder: Optional[str] = None) -> None:
    """Keep `answer` (JSON-able) on `topic` for `key` in this process and, when given, in `folder`'s file."""
    text = _text(key)
    _IN_PROCESS[(topic, text)] = answer
    if folder is None:
        return
    entries = _read(topic, folder)
    entries.pop(text, None)
    entries[text] = answer
    kept = dict(list(entries.items())[-KEPT:])
    path = os.path.join(folder, f"{topic}.json")
    # per process and thread: a delivery may ask from more than one thread
    temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        os.makedirs(folder, exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(kept, handle)
        # renamed into place: a reader in another process sees the old file or the new one
        os.replace(temporary, path)
    except (OSError, TypeError, ValueError):
        try:
            os.unlink(temporary)
        except OSError:
            pass


def _text(key: Any) -> str:
    return json.dumps(key)


def _read(topic: str, folder: str) -> Dict[str, Any]:
    try:
        with open(os.path.join(folder, f"{topic}.json"), encoding="utf-8") as handle:
            loaded = json.load(handle)
    except (OSError, ValueError):
        return {}
    return {str(name): value for name, value in loaded.items()} if isinstance(loaded, dict) else {}
