"""Which pushed images were built from which context key, kept in the git dir.

The push step records `IMAGE@sha256:...` under the build's context key; the build step, when
no local image carries that key (pruned, or a fresh worktree of the same clone), pulls the
recorded image back and retags it instead of building. It is a cache: a lost or broken file
only costs a rebuild.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List

KEEP = 5  # refs remembered per key


def _path(git_dir: Path) -> Path:
    return Path(git_dir) / "pachhook" / "image-keys.json"


def _load(git_dir: Path) -> Dict[str, List[str]]:
    try:
        data = json.loads(_path(git_dir).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def recorded_refs(git_dir: Path, key: str) -> List[str]:
    refs = _load(git_dir).get(key, [])
    return [ref for ref in refs if isinstance(ref, str)]


def record(git_dir: Path, key: str, repo_digest: str) -> None:
    """Remember repo_digest (IMAGE@sha256:...) for key; newest first."""
    data = _load(git_dir)
    refs = [repo_digest] + [ref for ref in data.get(key, []) if ref != repo_digest]
    data[key] = refs[:KEEP]
    path = _path(git_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(temporary, path)  # atomic, so a concurrent reader never sees half a file
