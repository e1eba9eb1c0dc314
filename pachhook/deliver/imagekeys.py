"""Which images were built, and pushed, from which context key; kept in the git dir.

The build step records the image id it built (or reused) under the context key, so the next
commit with that key finds it with one inspect instead of searching every image's labels.
The push step records `IMAGE@sha256:...`, so that when the engine no longer holds the
image (pruned, or another engine) the build step pulls it back and retags it instead of
building. It is a cache: a lost or broken file only costs time.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Dict, List

from pachhook.core.gitrepo import state_folder

KEEP = 5  # pushed refs remembered per key

# The images of one commit build in threads (deliver/commit.py): each record is a read, a
# change and a write, which two threads must not interleave (the second would drop the first's).
_WRITING = threading.Lock()


def _path(git_dir: Path) -> Path:
    return Path(state_folder(git_dir)) / "image-keys.json"


def _load(git_dir: Path) -> Dict[str, Dict[str, Any]]:
    try:
        data = json.loads(_path(git_dir).read_text())
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    for section in ("built", "pushed"):
        if not isinstance(data.get(section), dict):
            data[section] = {}
    return data


def _save(git_dir: Path, data: Dict[str, Any]) -> None:
    path = _path(git_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(temporary, path)  # atomic, so a concurrent reader never sees half a file


def recorded_image(git_dir: Path, key: str) -> str:
    """The local image id last built or reused for key ("" if none)."""
    value = _load(git_dir)["built"].get(key, "")
    return value if isinstance(value, str) else ""


def recorded_refs(git_dir: Path, key: str) -> List[str]:
    """`IMAGE@sha256:...` pushed for key, newest first."""
    refs = _load(git_dir)["pushed"].get(key, [])
    return [ref for ref in refs if isinstance(ref, str)] if isinstance(refs, list) else []


def record_built(git_dir: Path, key: str, image_id: str) -> None:
    with _WRITING:
        data = _load(git_dir)
        if data["built"].get(key) != image_id:
            data["built"][key] = image_id
            _save(git_dir, data)


def record_pushed(git_dir: Path, key: str, repo_digest: str) -> None:
    with _WRITING:
        data = _load(git_dir)
        refs = [repo_digest] + [ref for ref in recorded_refs(git_dir, key) if ref != repo_digest]
        if data["pushed"].get(key) != refs[:KEEP]:
            data["pushed"][key] = refs[:KEEP]
            _save(git_dir, data)
