"""Holds on pipelines, and the rollback/hold/release events that explain them.

After `pachhook rollback`, the pipeline is *held*: the queue's worker does not update it
again (a newer commit would roll it forward and undo the rollback, as image automation
does to GitOps reverts: argocd-image-updater#1249, fluxcd/flux2#4676) until
`pachhook release PIPELINE`, or until someone delivers a commit explicitly with
`pachhook run --commit REV`.

A hold is on one live pipeline: an environment (its pachctl context), a Pachyderm project
and the pipeline's name on the cluster (its environment's `pipeline_suffix` applied), so a
hold placed on `edges` in dev does not stop `edges` in prod.

Kept in `<git common dir>/pachhook/holds.json`, beside the queue, so every work tree of
the repository sees the same holds; read-modify-write happens under an advisory lock.
Files written before holds had an environment (format 1, keyed by pipeline name alone)
are read as holds on that name in *every* environment, the conservative reading of a
hold whose environment was never recorded, and are rewritten in format 2 on the next change.
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
FORMAT = 2
MAX_EVENTS = 500  # the oldest events are dropped beyond this: the file stays small
EVERY_ENVIRONMENT = ""  # the environment of a hold migrated from format 1

ROLLBACK, HOLD, RELEASE = "rollback", "hold", "release"


def project_key(project: str) -> str:
    """A project as holds compare it: "" for pachd's `default` (and for "the context's")."""
    return "" if project in ("", "default") else project


@dataclass(frozen=True)
class PipelineKey:
    """One live pipeline: where (environment, project) and its name on the cluster."""

    environment: str
    project: str
    pipeline: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "project", project_key(self.project))

    def covered_by(self, hold: "Hold") -> bool:
        """Whether `hold` stops deliveries to this pipeline."""
        return (
            hold.pipeline == self.pipeline
            and project_key(hold.project) == self.project
            and hold.environment in (EVERY_ENVIRONMENT, self.environment)
        )


@dataclass
class Hold:
    pipeline: str  # the name on the cluster
    since: float
    reason: str  # one line: "rollback to v2 (commit 0a1b2c3d4e5f)"
    version: str = ""  # the pipeline version the hold keeps running
    commit: str = ""  # the commit that version was built from
    project: str = ""  # "" = pachd's default project (or the context's)
    environment: str = EVERY_ENVIRONMENT
    context: str = ""  # the pachctl context the rollback used, for people
    name: str = ""  # the pipeline's name in its template (jobs and commands use it)
    branch: str = ""  # the branch whose copy it is, when the environment's suffix names branches

    def key(self) -> PipelineKey:
        return PipelineKey(self.environment, self.project, self.pipeline)

    def where(self) -> str:
        """`edges in env prod (project p)`, or `edges in every environment` for a migrated hold."""
        where = f"env {self.environment}" if self.environment else "every environment"
        return f"{self.pipeline} in {where}" + (f" (project {self.project})" if self.project else "")

    def release_command(self) -> str:
        """The command that lifts this hold."""
        words = ["pachhook", "release", self.name or self.pipeline]
        if self.environment:
            words += ["--env", self.environment]
        if self.branch and self.name and self.pipeline != self.name:
            words += ["--branch", self.branch]
        return " ".join(words)  # release finds the project (see `in_projects`)


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
    environment: str = ""
    context: str = ""

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))
        return data


@dataclass
class _State:
    holds: List[Hold] = field(default_factory=list)
    events: List[Event] = field(default_factory=list)


def _holds_from(data: Any) -> List[Hold]:
    """The holds of a file of either format (format 1: a mapping of pipeline name to hold)."""
    found: List[Hold] = []
    raw = data.get("holds") if isinstance(data, dict) else None
    if isinstance(raw, dict):  # format 1: one hold per name, whatever the environment
        items = [dict(value, pipeline=name) for name, value in raw.items() if isinstance(value, dict)]
    elif isinstance(raw, list):
        items = [value for value in raw if isinstance(value, dict)]
    else:
        items = []
    for item in items:
        try:
            found.append(Hold(**item))
        except TypeError:
            continue
    return found


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
        state = _State(holds=_holds_from(data))
        raw_events = data.get("events") if isinstance(data, dict) else None
        for event in raw_events if isinstance(raw_events, list) else []:
            try:
                state.events.append(Event(**event))
            except TypeError:
                continue
        return state

    def _write(self, state: _State) -> None:
        data = {
            "format": FORMAT,
            "holds": [asdict(hold) for hold in state.holds],
            "events": [asdict(event) for event in state.events[-MAX_EVENTS:]],
        }
        path = self.folder / FILE_NAME
        temporary = path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(temporary, path)

    # -- reading ---------------------------------------------------------------------------

    def held(self, key: PipelineKey) -> Optional[Hold]:
        """The hold that stops deliveries to `key`, None when there is none."""
        return next((hold for hold in self._read().holds if key.covered_by(hold)), None)

    def all(self) -> List[Hold]:
        return sorted(self._read().holds, key=lambda hold: (hold.pipeline, hold.environment, hold.project))

    def in_projects(self, environment: str, pipeline: str) -> List[Hold]:
        """The holds on `pipeline` in `environment`, whatever their project."""
        return [hold for hold in self.all() if hold.pipeline == pipeline and hold.environment in ("", environment)]

    def events(self, pipeline: Optional[str] = None, limit: Optional[int] = None) -> List[Event]:
        """Events, newest first (of one pipeline when named)."""
        found = [event for event in self._read().events if pipeline in (None, event.pipeline)]
        found.reverse()
        return found[:limit] if limit is not None else found

    # -- changing --------------------------------------------------------------------------

    def hold(self, hold: Hold, event: Event) -> None:
        """Place `hold`, replacing any hold on the same pipeline in the same environment."""
        with self._locked():
            state = self._read()
            state.holds = [other for other in state.holds if other.key() != hold.key()]
            state.holds.append(hold)
            state.events.append(event)
            self._write(state)

    def release(self, key: PipelineKey, message: str) -> Optional[Hold]:
        """Remove the hold that stops `key` (recording a release event); it, or None if there was none."""
        with self._locked():
            state = self._read()
            hold = next((hold for hold in state.holds if key.covered_by(hold)), None)
            if hold is None:
                return None
            state.holds.remove(hold)
            state.events.append(
                Event(
                    RELEASE,
                    hold.pipeline,
                    time.time(),
                    message,
                    from_version=hold.version,
                    project=hold.project,
                    environment=hold.environment,
                    context=hold.context,
                )
            )
            self._write(state)
            return hold

    def record(self, event: Event) -> None:
        with self._locked():
            state = self._read()
            state.events.append(event)
            self._write(state)


def job_key(root: Path, job: Any) -> PipelineKey:
    """The live pipeline a queued job would update: its environment, project and name on the cluster.

    Read from the job's commit, as the update step reads it. When the commit's configuration
    or template cannot be read, the update step fails on it anyway: the key is then the
    job's own names.
    """
    from pachhook.core.config import ConfigError, load_config_at
    from pachhook.deliver.steps.base import StepError
    from pachhook.deliver.steps.update import RenderError, job_environment, render_template, render_values

    try:
        config = load_config_at(root, job.commit)
        environment = job_environment(config, job, root)
    except (ConfigError, StepError):
        return PipelineKey(job.environment, "", job.pipeline)
    project = environment.project
    if not project:  # the project the template names, if any
        values = render_values(job.commit, job.branch, getattr(config, "tag", "full"))
        try:
            specs = render_template(
                root, job.commit, job.template, values, annotate=False, jsonnet_args=config.jsonnet_args
            )
        except RenderError:
            specs = []
        project = next((spec.project for spec in specs if spec.pipeline == job.pipeline), "")
    return PipelineKey(environment.name, project, job.pipeline + environment.suffix_for(job.branch))


def held_job(holds: Holds, root: Path, job: Any) -> Optional[Hold]:
    """The hold that stops `job`'s update, None when none does.

    The job's name on the cluster is its template's name plus a suffix: without a hold whose
    pipeline starts with that name, the commit's configuration is not read (~60 ms).
    """
    if not any(hold.pipeline.startswith(job.pipeline) for hold in holds.all()):
        return None
    return holds.held(job_key(root, job))


def held_message(hold: Hold) -> str:
    """Why a job's update does not run: one line with the way out."""
    return (
        f"{HELD_PREFIX}{hold.where()} is held at v{hold.version} ({hold.reason}); `{hold.release_command()}`"
        " lets the queue deliver it again"
    )


HELD_PREFIX = "held: "


def status_lines(holds: Holds, events: int = 5) -> List[str]:
    """What `pachhook status` shows: each hold, then the newest rollback/hold/release events."""
    lines = [
        f"held: {hold.where()} at v{hold.version} ({hold.reason}, {_clock(hold.since)});"
        f" `{hold.release_command()}` to deliver it again"
        for hold in holds.all()
    ]
    lines += [f"{event.kind} at {_clock(event.at)}: {event.message}" for event in holds.events(limit=events)]
    return lines


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
