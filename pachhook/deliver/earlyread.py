"""A cluster call started before its answer is needed, in a thread of its own (issue 16).

A delivery's cluster calls are short but strictly serial in the delivery's own order: the
live read for the order check waits for the images to build and push, although it does not
depend on them, and the first look at the job the update started waits for the stamp. An
`Early` starts such a call at once and hands its answer over where the caller needs it:
`result()` waits for the thread and gives the value, or raises, in the caller's thread, the
exception the call raised; nothing is lost or reported early.

Two uses, each saying why it is safe with threads: the read ahead (`ReadAhead` below) hands
its thread a backend and session the caller leaves alone until the thread has ended; the
stamp beside the job look (stamp.after_updates) shares a backend whose calls change nothing
in it. The thread is a daemon: a process ending (Ctrl-C) does not wait for a call no one
will look at.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Generic, List, Optional, Sequence, Tuple, TypeVar

from pachhook.core import gitrepo
from pachhook.core.config import load_config_at
from pachhook.deliver.backends.clusterview import view_for
from pachhook.deliver.backends.pachctl import BackendError, PipelineState
from pachhook.deliver.backends.session import Session, open_session
from pachhook.spec.rules import name_problem

T = TypeVar("T")


class Early(Generic[T]):
    """`call()` running in a thread of its own since `started` (time.monotonic())."""

    def __init__(self, call: Callable[[], T], name: str = "pachhook-early") -> None:
        self.started = time.monotonic()
        self._call = call
        self._value: Optional[T] = None
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._call()
        except BaseException as error:  # handed to the caller's thread by result()
            self._error = error

    def result(self) -> T:
        """Wait for the call; its value, or the exception it raised, raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set when no error was


# The order check reads the live pipelines early only when the read is this fresh at the
# check: a newer commit applied by another deliverer during a long build is then refused
# before this apply, as it always was, rather than undone after it by the race guard.
FRESH_SECONDS = 10.0

Version = Tuple[int, int, int]
LiveStates = Dict[str, Dict[str, Optional[PipelineState]]]  # project -> pipeline -> state (None: absent)


@dataclass
class ReadAhead:
    """The live read before a commit's apply, and pachd's version, started while its images
    build and push (`read_ahead`), for steps/update.run_together.

    Why reading early keeps the order check's meaning: the read still comes before the
    apply, and the read-back after the apply (steps/update._restore_if_overtaken) judges
    everything that moved in between, whether the gap was milliseconds or a build: a newer
    commit applied meanwhile is put back on top and this job is superseded. So no window is
    new, only longer, and FRESH_SECONDS bounds how much longer.

    `reads` is the live read's thread; once that read is back it starts pachd's version in
    a thread of its own (`Read.version`), which only the stamp after the apply needs, so the
    apply never waits for it. `backend` and `session` belong to the live read's thread until
    it has ended: `take()` waits for it. From then on the version's call may still run
    beside the caller's: both are pachctl processes of a session whose configuration file
    the first call (the live read) has already written, or RPCs on a channel gRPC lets
    threads share; the backend's one cache (the client's version) is the same whoever fills
    it. `close()` waits for both threads before it ends the session.
    """

    environment: Any
    session: Session
    backend: Any
    wanted: Dict[str, List[str]]  # project ("" = the session's) -> the pipelines read
    reads: "Early[Read]"

    def serves(self, environment: Any) -> bool:
        """Whether this read was made for `environment` (the commit's, as the update step found it)."""
        return bool(environment == self.environment)

    def take(self) -> Any:
        """The backend, the caller's to call from here on (the live read has ended)."""
        self._answer()
        return self.backend

    def live(self, project: str, names: Sequence[str]) -> Optional[Dict[str, Optional[PipelineState]]]:
        """The live pipelines `names` of `project` as read early; None when they are to be read
        now: the early read failed (read again, its error is then reported as it always was),
        it is older than FRESH_SECONDS, or it did not read all of them (a template naming its
        own project, a pipeline renamed)."""
        answer = self._answer()
        if answer is None or time.monotonic() - self.reads.started > FRESH_SECONDS:
            return None
        states = answer.live.get(project)
        if states is None or any(name not in states for name in names):
            return None
        return {name: states[name] for name in names}

    def version(self) -> Optional[Version]:
        """What the stamp may write (view.version(): pachctl's and pachd's), None when unknown:
        asked again after the update, where a failure is reported as it always was."""
        answer = self._answer()
        return answer.version.result() if answer is not None else None

    def close(self) -> None:
        """Drop what was read (a build failed, nothing to apply) and end the private session,
        once no thread of the read ahead calls through it any more."""
        self.version()
        self.session.close()

    def _answer(self) -> "Optional[Read]":
        try:
            return self.reads.result()
        except Exception:  # BackendError, ClusterError: the read is made again where it always was
            return None


@dataclass
class Read:
    """What the live read's thread gives: the live pipelines, and pachd's version being asked."""

    live: LiveStates
    version: "Early[Optional[Version]]"


def read_ahead(repo_root: Path, git_dir: Path, jobs: Sequence[Any]) -> Optional[ReadAhead]:
    """Start reading the live pipelines of `jobs` (one commit and environment, in delivery
    order) and pachd's version, in a thread of their own, while their images build.

    None when the delivery cannot get that far (configuration, environment or pachctl
    configuration in error): the update step finds and reports it as it always has. Dry
    runs do not call this: they talk to the cluster no more than before.
    """
    from pachhook.deliver.steps.update import job_environment, make_backend

    if not jobs:
        return None
    first = jobs[0]
    try:
        config = load_config_at(repo_root, first.commit)
        environment = job_environment(config, first, repo_root)
    except Exception:  # ConfigError, StepError: reported by the update step
        return None
    wanted: Dict[str, List[str]] = {}
    for job in jobs:
        # As the update step names them (apply_environment): the environment's project, and
        # the pipeline with the environment's suffix; a template naming another project is
        # read again at the check (ReadAhead.live). A name the validator would refuse is
        # never sent: the update step refuses it before any cluster call, as it always has.
        name = job.pipeline + environment.suffix_for(job.branch)
        if name_problem("pipeline", name) is None:
            wanted.setdefault(environment.project or "", []).append(name)
    if not wanted:
        return None
    try:
        session = open_session(environment.context, environment.project)
    except BackendError:  # reported by the update step, which opens the session again
        return None
    backend = make_backend(config, environment, session, Path(gitrepo.state_folder(git_dir)))
    reads = Early(
        lambda: _read(backend, wanted, lambda live: _ask_order(repo_root, first.commit, live)), "pachhook-live-read"
    )
    return ReadAhead(environment, session, backend, wanted, reads)


def _read(backend: Any, wanted: Dict[str, List[str]], then: Callable[[LiveStates], None]) -> Read:
    """The live read's thread: the live read first, alone, which on a new private session
    is the call pachctl records the cluster's deployment ID after (it writes the session's
    configuration file on a first connect, unlocked: reference P7, P21), so no two pachctl
    processes of one session ever start while that write may happen; then pachd's version
    in a thread of its own, and `then` with what was read, in this one."""
    live = {project: backend.inspect_all(names, project) for project, names in wanted.items()}
    version = Early(lambda: _version(backend), "pachhook-pachd-version")
    then(live)
    return Read(live, version)


def _version(backend: Any) -> Optional[Version]:
    try:
        found: Optional[Version] = view_for(backend).version()
    except Exception:  # BackendError, ClusterError: asked again after the update
        found = None
    return found


def _ask_order(repo_root: Path, commit: str, live: LiveStates) -> None:
    """Ask git now what the order check will ask of each live commit (order.decide: does
    this clone have it, is it an ancestor of the job's): the answers are kept for the
    process (gitrepo.settle), so the check after the push starts no git process. Asking
    early changes nothing: a failure here is met, and reported, at the check."""
    from pachhook.deliver import order
    from pachhook.deliver.steps.update import COMMIT_ANNOTATION

    for states in live.values():
        for state in states.values():
            older = state.annotations.get(COMMIT_ANNOTATION, "") if state is not None else ""
            if not (gitrepo.is_full_sha(older) and gitrepo.is_full_sha(commit)) or older == commit:
                continue
            try:
                if order.known(older, repo_root):
                    order.is_ancestor(older, commit, repo_root)
            except Exception:  # GitError, OSError: the check asks again
                continue
