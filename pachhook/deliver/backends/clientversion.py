"""pachctl's own version (`pachctl version --client-only`), remembered per executable file.

A pachctl start is a process start and, with the real client, a Go runtime start: asking
its version once per delivery is one call of the few a delivery makes. The answer depends
only on the file, so it is kept under the file's real path, modification time and size:
for the life of the process, and across processes in a small JSON file in a folder the
caller names (the update step gives the queue's, `<git common dir>/pachhook`). A pachctl
replaced or upgraded on disk is a new key and is asked again.

The file is a cache only: unreadable, damaged or unwritable, it is a miss, never an error.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Dict, Optional, Tuple

Version = Tuple[int, int, int]
Key = Tuple[str, int, int]  # real path, st_mtime_ns, st_size

CACHE_NAME = "pachctl-version.json"
KEPT = 8  # executables remembered in the file (a repository rarely names more than one)

_IN_PROCESS: Dict[Key, Version] = {}


def key_of(path: str) -> Key:
    """The executable's real path (a symlink switched to another pachctl is another key),
    mtime and size; an unreadable file gets (path, 0, 0)."""
    real = os.path.realpath(path)
    try:
        status = os.stat(real)
    except OSError:
        return real, 0, 0
    return real, status.st_mtime_ns, status.st_size


def recall(key: Key, folder: Optional[str] = None) -> Optional[Version]:
    """The version remembered for `key`: in this process, else in `folder`'s file."""
    found = _IN_PROCESS.get(key)
    if found is None and folder is not None:
        found = _read(folder).get(_text(key))
        if found is not None:
            _IN_PROCESS[key] = found
    return found


def remember(key: Key, version: Version, folder: Optional[str] = None) -> None:
    """Keep `version` for `key` in this process and, when given, in `folder`'s file."""
    _IN_PROCESS[key] = version
    if folder is None:
        return
    entries = _read(folder)
    entries.pop(_text(key), None)
    entries[_text(key)] = version
    kept = dict(list(entries.items())[-KEPT:])
    path = os.path.join(folder, CACHE_NAME)
    # per process and thread: a delivery may ask from its early-read thread (deliver/earlyread.py)
    temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        os.makedirs(folder, exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump({name: list(found) for name, found in kept.items()}, handle)
        # renamed into place: a reader in another process sees the old file or the new one
        os.replace(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass


def _text(key: Key) -> str:
    return json.dumps(list(key))


def _read(folder: str) -> Dict[str, Version]:
    try:
        with open(os.path.join(folder, CACHE_NAME), encoding="utf-8") as handle:
            loaded = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(loaded, dict):
        return {}
    entries: Dict[str, Version] = {}
    for name, found in loaded.items():
        if isinstance(found, list) and len(found) == 3 and all(type(part) is int for part in found):
            entries[str(name)] = (found[0], found[1], found[2])
    return entries
