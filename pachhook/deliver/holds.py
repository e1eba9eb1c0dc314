"""Holds on pipelines, and the rollback/hold/release events that explain them.

After `pachhook rollback`, the pipeline is *held*: the queue's worker does not update it
again (a newer commit would roll it forward and undo the rollback, as image automation
does to GitOps reverts: argocd-image-updater#1249, fluxcd/flux2#4676) until
`pachhook release PIPELINE`, or until someone delivers a commit explicitly with
`pachhook run --commit REV`.

Kept in `<git common dir>/pachhook/holds.json`, beside the queue, so every work tree of
the repository sees the same holds; read-modify-write happens under an advisory lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

FILE_NAME = "holds.json"
LOCK_NAME = "holds.lock"
MAX_EVENTS = 500  # the oldest events are dropped beyond this: the file stays small

ROLLBACK, HOLD, RELEASE = "rollback", "hold", "release"


@dataclass
class Hold:
    pipeline: str
    since: float
    reason: str  # one line: "rollback to v2 (commit 0a1b2c3d4e5f)"
    version: str = ""  # the pipeline version the hold keeps running
    commit: str = ""  # the commit that version was built from
    project: str = ""


@dataclass
class Event:
    kind: str  # rollback | hold | release
    pipeline: str
    at: float
    message: str  # one line, for status and provenance
    from_version: str = ""
    to_version: str = ""
    commit: str = ""  # the commit the pipeline runs after the event (rollback: the target's)
    digest: str = ""
    source: str = ""  # where a rollback found its spec: "ledger" | "cluster"
    project: str = ""

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))
        return data


@dataclass
class _State:
    holds: Dict[str, Hold] = field(default_factory=dict)
    events: List[Event] = field(default_factory=list)


class Holds:
    """The holds of one repository; `folder` is the `pachhook` folder of the git common dir."""

    def __init__(self, folder: Any) -> None:
        self.folder = Path(folder)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / LOCK_NAME, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> _State:
        try:
            data = json.loads((self.folder / FILE_NAME).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return _State()
        except (OSError, ValueError):
            return _State()  # a damaged file holds nothing; the next write replaces it
        state = _State()
        for name, hold in (data.get("holds") or {}).items():
            try:
                state.holds[name] = Hold(**hold)
            except TypeError:
                continue
        for event in data.get("events") or []:
            try:
                state.events.append(Event(**event))
            except TypeError:
                continue
        return state

    def _write(self, state: _State) -> None:
        data = {
            "holds": {name: asdict(hold) for name, hold in state.holds.items()},
            "events": [asdict(event) for event in state.events[-MAX_EVENTS:]],
        }
        path = self.folder / FILE_NAME
        temporary = path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(temporary, path)

    # -- reading ---------------------------------------------------------------------------

    def held(self, pipeline: str) -> Optional[Hold]:
        return self._read().holds.get(pipeline)

    def all(self) -> List[Hold]:
        return sorted(self._read().holds.values(), key=lambda hold: hold.pipeline)

    def events(self, pipeline: Optional[str] = None, limit: Optional[int] = None) -> List[Event]:
        """Events, newest first (of one pipeline when named)."""
        found = [event for event in self._read().events if pipeline in (None, event.pipeline)]
        found.reverse()
        return found[:limit] if limit is not None else found

    # -- changing --------------------------------------------------------------------------

    def hold(self, hold: Hold, event: Event) -> None:
        with self._locked():
            state = self._read()
            state.holds[hold.pipeline] = hold
            state.events.append(event)
            self._write(state)

    def release(self, pipeline: str, message: str) -> Optional[Hold]:
        """Remove the hold (recording a release event); the hold removed, or None if there was none."""
        with self._locked():
            state = self._read()
            hold = state.holds.pop(pipeline, None)
            if hold is None:
                return None
            state.events.append(
                Event(RELEASE, pipeline, time.time(), message, from_version=hold.version, project=hold.project)
            )
            self._write(state)
            return hold

    def record(self, event: Event) -> None:
        with self._locked():
            state = self._read()
            state.events.append(event)
            self._write(state)


def held_message(hold: Hold) -> str:
    """Why a job's update does not run: one line with the way out."""
    return (
        f"held: {hold.pipeline} is held at v{hold.version} ({hold.reason}); `pachhook release {hold.pipeline}`"
        " lets the queue deliver it again"
    )


HELD_PREFIX = "held: "


def status_lines(holds: Holds, events: int = 5) -> List[str]:
    """What `pachhook status` shows: each hold, then the newest rollback/hold/release events."""
    lines = [
        f"held: {hold.pipeline} at v{hold.version} ({hold.reason}, {_clock(hold.since)});"
        f" `pachhook release {hold.pipeline}` to deliver it again"
        for hold in holds.all()
    ]
    lines += [f"{event.kind} at {_clock(event.at)}: {event.message}" for event in holds.events(limit=events)]
    return lines


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
