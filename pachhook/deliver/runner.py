"""Draining the queue: run each job's steps build -> push -> update, resuming where it stopped.

A background worker is one detached process per repository. It holds an `fcntl.flock`
lock on `<git common dir>/pachhook/worker.lock` while it works; the OS drops the lock
when the process ends, however it ends, so "is a worker running?" is answered by trying
the lock, never by guessing from a pid file.
"""

from __future__ import annotations

import os
import sys
import time

from pachhook.queue.states import CANCELLED, DONE, FAILED, STEP_DONE, STEP_NAMES, STEP_SKIPPED
from pachhook.queue.store import LeaseLost, Queue

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only; this module starts workers from the hook
    from typing import Any, Callable, Dict, List, Optional

    from pachhook.queue.jobs import Job

    Progress = Callable[[str], None]

LOCK_NAME = "worker.lock"
LOG_NAME = "worker.log"
DEFAULT_LEASE_SECONDS = 60.0


def one_line(error: BaseException) -> str:
    """An exception as one line: a StepError's message is the line, anything else is named."""
    from pachhook.core.sanitize import one_line as bounded_line
    from pachhook.deliver.steps import StepError

    text = bounded_line(error)
    if isinstance(error, StepError):
        return text or "step failed"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def process_job(
    queue: Queue,
    job: Job,
    repo_root: Any,
    log: Callable[[str], None],
    worker_id: Optional[str] = None,
    dry_run: bool = False,
) -> Job:
    """Run the steps of a leased job that are not done yet, recording each result.

    Stops at the first failing step (the job is then failed, retryable) and before any
    step once the job has been cancelled. Returns the job as the queue has it after.
    """
    from pathlib import Path

    from pachhook.deliver.steps import StepContext, run_step

    results: Dict[str, Dict[str, str]] = {
        record.name: dict(record.result) for record in job.steps if record.state in (STEP_DONE, STEP_SKIPPED)
    }
    for name in STEP_NAMES:
        if name in results:
            continue
        if queue.state_of(job.id) == CANCELLED:
            log(f"{name}: not started, the job was cancelled")
            return queue.get(job.id)
        record = queue.start_step(job.id, name, worker_id)
        log(f"{name}: started (attempt {record.attempts})")
        context = StepContext(
            repo_root=Path(repo_root),
            git_dir=queue.folder.parent,
            job=queue.get(job.id),
            log=log,
            results=dict(results),
            dry_run=dry_run,
        )
        try:
            outcome = run_step(name, context)
        except LeaseLost:
            raise
        except Exception as error:  # a step's failure, whatever its kind, is the job's, not the worker's
            cause = one_line(error)
            log(f"{name}: failed: {cause}")
            return queue.fail_step(job.id, name, cause, worker_id)
        data = {str(k): str(v) for k, v in outcome.data.items()}
        data["outcome"] = outcome.outcome
        log(f"{name}: {outcome.outcome}" + (f": {outcome.message}" if outcome.message else ""))
        queue.finish_step(job.id, name, data, skipped=outcome.outcome == "skipped", worker_id=worker_id)
        results[name] = data
    return queue.get(job.id)


class DrainSummary:
    __slots__ = ("done", "failed", "other")

    def __init__(self) -> None:
        self.done: List[int] = []
        self.failed: List[int] = []
        self.other: List[int] = []  # cancelled meanwhile, lease lost


def new_worker_id() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{time.time():.0f}"


def drain(
    repo_root: Any,
    queue: Optional[Queue] = None,
    worker_id: Optional[str] = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    progress: Optional[Progress] = None,
    once: bool = False,
    dry_run: bool = False,
) -> DrainSummary:
    """Lease and run jobs until none may run now (or after one job with `once`)."""
    from pachhook.core import gitrepo

    own_queue = queue is None
    if queue is None:
        queue = Queue(gitrepo.git_common_dir(repo_root))
    worker_id = worker_id or new_worker_id()
    summary = DrainSummary()
    say = progress or (lambda line: None)
    try:
        while True:
            job = queue.lease_next(worker_id, lease_seconds)
            if job is None:
                break
            label = f"job {job.id} {job.pipeline}@{job.commit[:12]}"
            say(f"{label}: running")

            def log(line: str, job_id: int = job.id, label: str = label) -> None:
                queue.append_log(job_id, line)
                say(f"{label}: {line}")

            heartbeat = _Heartbeat(os.path.dirname(queue.folder_str), job.id, worker_id, lease_seconds)
            try:
                final = process_job(queue, job, repo_root, log, worker_id, dry_run)
            except LeaseLost as error:
                say(f"{label}: {error}")
                summary.other.append(job.id)
                continue
            except BaseException:
                # Interrupted (Ctrl-C, SIGTERM): hand the job back instead of letting its lease run out.
                queue.release(job.id, worker_id)
                raise
            finally:
                heartbeat.stop()
            say(f"{label}: {final.state}")
            (
                summary.done if final.state == DONE else summary.failed if final.state == FAILED else summary.other
            ).append(job.id)
            if once:
                break
    finally:
        if own_queue:
            queue.close()
    return summary


class _Heartbeat:
    """Renews a lease from a thread while a (possibly long) step runs."""

    def __init__(self, common_dir: str, job_id: int, worker_id: str, lease_seconds: float) -> None:
        import threading

        self._stop = threading.Event()
        self._args = (common_dir, job_id, worker_id, lease_seconds)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        common_dir, job_id, worker_id, lease_seconds = self._args
        queue = Queue(common_dir)  # sqlite connections stay in the thread that made them
        try:
            while not self._stop.wait(max(lease_seconds / 3.0, 0.05)):
                if not queue.renew_lease(job_id, worker_id, lease_seconds):
                    return
        finally:
            queue.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# -- the background worker's process ---------------------------------------------------


class WorkerLock:
    """The repository's worker lock; held while open, released by the OS on exit."""

    def __init__(self, folder: Any) -> None:
        self.path = os.path.join(os.fspath(folder), LOCK_NAME)
        self._fd: Optional[int] = None

    def acquire(self) -> bool:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def write_owner(self) -> None:
        """Write this process's id into the held lock file: for people, not for liveness."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def worker_pid(folder: Any) -> Optional[int]:
    """The process id of the running worker, None when none holds the lock."""
    if not worker_running(folder):
        return None
    try:
        with open(os.path.join(os.fspath(folder), LOCK_NAME), encoding="ascii") as handle:
            return int(handle.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def worker_running(folder: Any) -> bool:
    """Whether a worker holds the lock of this queue folder."""
    lock = WorkerLock(folder)
    if lock.acquire():
        lock.release()
        return False
    return True


def start_background(repo_root: Any, common_dir: Any) -> bool:
    """Start a detached worker unless one is running; True when one was started.

    The worker gets its own session (setsid) and its standard streams go to worker.log:
    git waits for a hook's stdout and stderr to close, so an inherited stream would hold
    `git commit` until the worker ends. posix_spawn keeps subprocess off the hook's path.
    """
    from pachhook.core.gitrepo import env_without_git_vars

    folder = os.path.join(os.fspath(common_dir), "pachhook")
    if worker_running(folder):
        return False
    log = os.path.join(folder, LOG_NAME)
    argv = [sys.executable, "-m", "pachhook", "worker", "--repo", os.fspath(repo_root)]
    os.posix_spawn(
        sys.executable,
        argv,
        env_without_git_vars(),
        setsid=True,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
    )
    # Not waited for: the worker outlives this process and is re-parented to init.
    return True


def run_worker(
    repo_root: Any, lease_seconds: float = DEFAULT_LEASE_SECONDS, progress: Optional[Progress] = None
) -> int:
    """The background worker's life: take the lock, drain, exit when the queue is empty.

    After letting the lock go it looks once more: a commit queued between its last look
    and the release saw the lock held and started no worker, so that job is this
    worker's to run. While another worker holds a job's lease it waits: if that worker
    died, the job is this one's once the lease ends.
    """
    from pachhook.core import gitrepo

    common = gitrepo.git_common_dir(repo_root)
    queue = Queue(common)
    lock = WorkerLock(queue.folder)
    say = progress or (lambda line: None)
    try:
        if not lock.acquire():
            say("another worker is running; leaving the queue to it")
            return 0
        lock.write_owner()
        worker_id = new_worker_id()
        say(f"worker {worker_id} started")
        while True:
            drain(repo_root, queue=queue, worker_id=worker_id, lease_seconds=lease_seconds, progress=say)
            expiry = queue.next_lease_expiry()
            if not queue.has_leasable() and expiry is not None and expiry > time.time():
                # A job still leased: its worker may have died, and then nobody takes it up
                # before the next commit. Wait for the lease to end (or be renewed), looking
                # every second: a commit queued meanwhile starts no worker while this one
                # holds the lock, so its job must not wait for the lease too.
                time.sleep(min(expiry - time.time() + 0.2, 1.0))
                continue
            lock.release()
            if not queue.has_leasable() or not lock.acquire():
                break
            lock.write_owner()
        say(f"worker {worker_id} finished: queue empty")
        return 0
    finally:
        lock.release()
        queue.close()
