"""The worker: the one step loop (build -> push -> update) and draining the queue with it.

`run_steps` is the loop every delivery goes through: the queue's jobs (`process_group`,
resuming at the first step not done, recording each result) and `pachhook run --commit`
(deliver/commit.py, nothing recorded). What differs between them is what happens around
each step, given as a StepHooks; the steps, their order, the failure rule (stop at the
first failing step) and the log lines are the same. Both build and push a commit's images
concurrently, each shared image once (deliver/sharedimages.py `deliver_concurrently`,
bounded by `build_concurrency`), and then update its pipelines for one environment
together (`update_together`: one Pachyderm transaction, all applied or none).

Starting a background worker and its lock live in queue/launch.py, which the
post-commit hook imports; this module is imported by worker processes only.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from pachhook.core import gitrepo
from pachhook.core.config import DEFAULT_BUILD_CONCURRENCY, DEFAULT_KEEP_JOBS, ConfigError, load_config, load_config_at
from pachhook.core.sanitize import one_line as bounded_line
from pachhook.deliver.earlyread import ReadAhead, read_ahead
from pachhook.deliver.holds import Holds, held_job, held_message
from pachhook.deliver.order import unreachable
from pachhook.deliver.sharedimages import SharedImages, deliver_concurrently
from pachhook.deliver.steps import build
from pachhook.deliver.steps.base import StepContext, StepError, StepResult, run_step
from pachhook.deliver.steps.update import not_applied, run_together
from pachhook.queue.jobs import Job
from pachhook.queue.launch import WorkerLock
from pachhook.queue.retention import prune
from pachhook.queue.states import CANCELLED, DONE, FAILED, STEP_DONE, STEP_NAMES, STEP_SKIPPED, SUPERSEDED
from pachhook.queue.store import LeaseLost, Queue

Progress = Callable[[str], None]
PathLike = Union[str, Path]

DEFAULT_LEASE_SECONDS = 60.0


def one_line(error: BaseException) -> str:
    """An exception as one line: a StepError's message is the line, anything else is named."""
    text = bounded_line(error)
    if isinstance(error, StepError):
        return text or "step failed"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass
class StepsRun:
    """What `run_steps` did to one job's steps."""

    timings: Dict[str, float] = field(default_factory=dict)  # step -> seconds, for the steps run
    outcomes: Dict[str, str] = field(default_factory=dict)  # step -> done/reused/skipped/failed
    error: str = ""  # "step: cause" of the step that failed, "" when none did
    cancelled: bool = False  # stopped before a step because the job was cancelled


class StepHooks:
    """What happens around each step; this base does nothing (`run --commit` records nothing)."""

    def starting(self, name: str, ctx: StepContext) -> bool:
        """Called before step `name`; False stops the job here (it was cancelled)."""
        return True

    def finished(self, name: str, data: Dict[str, str], skipped: bool) -> None:
        """Called after step `name` succeeded, with its result (outcome included)."""

    def failed(self, name: str, cause: str) -> None:
        """Called after step `name` failed with a one-line cause."""


def run_steps(
    ctx: StepContext, hooks: StepHooks, show_time: bool = False, only: Sequence[str] = STEP_NAMES
) -> StepsRun:
    """Run the steps of ctx.job (of `only`) not already in ctx.results, in order, until one fails.

    Each outcome is logged through ctx.log as `step: outcome[: message]` (with the
    step's seconds when show_time); a failure as `step: failed: cause`.
    """
    run = StepsRun()
    for name in STEP_NAMES:
        if name in ctx.results or name not in only:
            continue
        if not hooks.starting(name, ctx):
            run.cancelled = True
            break
        started = time.monotonic()
        try:
            result: Union[StepResult, Exception] = run_step(name, ctx)
        except Exception as error:  # a step's failure, whatever its kind, is the job's, not the worker's
            result = error
        if not record_step(name, ctx, hooks, run, result, time.monotonic() - started, show_time):
            break
    return run


def record_step(
    name: str,
    ctx: StepContext,
    hooks: StepHooks,
    run: StepsRun,
    result: Union[StepResult, BaseException],
    seconds: float,
    show_time: bool = False,
) -> bool:
    """Log and record what step `name` gave (its result, or the exception that ended it);
    False when it failed. The one place a step's outcome becomes a log line."""
    run.timings[name] = seconds
    if isinstance(result, BaseException):
        cause = one_line(result)
        run.outcomes[name] = "failed"
        run.error = f"{name}: {cause}"
        ctx.log(f"{name}: failed: {cause}")
        hooks.failed(name, cause)
        return False
    run.outcomes[name] = result.outcome
    data = {str(k): str(v) for k, v in result.data.items()}
    data["outcome"] = result.outcome
    ctx.results[name] = data
    ctx.log(
        f"{name}: {result.outcome}"
        + (f": {result.message}" if result.message else "")
        + (f" ({seconds:.1f}s)" if show_time else "")
    )
    hooks.finished(name, data, skipped=result.outcome == "skipped")
    return True


@dataclass
class Member:
    """One pipeline of a commit's delivery to one environment, on its way to the update step."""

    ctx: StepContext
    hooks: StepHooks
    run: StepsRun


def update_together(
    members: Sequence[Member],
    blockers: Sequence[Tuple[str, str]],
    show_time: bool = False,
    ahead: Optional[ReadAhead] = None,
) -> None:
    """The update step of a commit's pipelines for one environment: all applied, or none.

    `members` reached the update (built and pushed), in delivery order; `blockers` are the
    commit's other pipelines that did not, each with why ("failed", "held"). With a
    blocker, or when a member may not start its update (held by a rollback), no member is
    applied and each says why: no output may mix the new code of one pipeline with the old
    code of another by accident. A job the user cancelled is left out by choice. Otherwise
    the updates go to the cluster in one transaction (steps/update.run_together). A dry run
    shows each update on its own, blockers or not. `ahead` is the live read started while
    the images built (`read_ahead_for`); the caller closes it.
    """
    started: List[Member] = []
    refused = list(blockers)
    for member in members:
        if member.hooks.starting("update", member.ctx):
            started.append(member)
            continue
        member.run.cancelled = True
        why = getattr(member.hooks, "stopped", "") or "stopped"
        if why != "cancelled":  # a job the user cancelled is left out; the others still go together
            refused.append((member.ctx.job.pipeline, why))
    if not started:
        return
    if started[0].ctx.dry_run:
        for member in started:
            began = time.monotonic()
            try:
                result: Union[StepResult, Exception] = run_step("update", member.ctx)
            except Exception as error:  # this pipeline's failure, reported in one line
                result = error
            record_step("update", member.ctx, member.hooks, member.run, result, time.monotonic() - began, show_time)
        return
    if refused:
        cause = StepError(not_applied(refused))
        for member in started:
            record_step("update", member.ctx, member.hooks, member.run, cause, 0.0, show_time)
        return
    began = time.monotonic()
    results = run_together([member.ctx for member in started], ahead)
    seconds = (time.monotonic() - began) / len(started)
    for member, outcome in zip(started, results):
        record_step("update", member.ctx, member.hooks, member.run, outcome, seconds, show_time)


class ThreadQueues:
    """The queue as each thread may use it: SQLite connections stay in the thread that opened
    them, so a build thread of a group opens its own on the same file (`close_mine` when its
    job's build and push are over); the thread that leased the group uses the worker's own."""

    def __init__(self, queue: Queue) -> None:
        self.main = queue
        self._owner = threading.get_ident()
        self._local = threading.local()

    def current(self) -> Queue:
        if threading.get_ident() == self._owner:
            return self.main
        mine: Optional[Queue] = getattr(self._local, "queue", None)
        if mine is None:
            mine = self._local.queue = Queue(self.main.folder.parent)
        return mine

    def close_mine(self) -> None:
        mine: Optional[Queue] = getattr(self._local, "queue", None)
        if mine is not None:
            self._local.queue = None
            mine.close()


class _QueueHooks(StepHooks):
    """Steps of a leased job: each start, result and failure recorded in the queue (through
    the connection of the thread the step runs in)."""

    def __init__(self, queues: ThreadQueues, job_id: int, worker_id: Optional[str]) -> None:
        self.queues, self.job_id, self.worker_id = queues, job_id, worker_id
        self.stopped = ""  # why a step was not started: "cancelled", "held"

    @property
    def queue(self) -> Queue:
        return self.queues.current()

    def starting(self, name: str, ctx: StepContext) -> bool:
        if self.queue.state_of(self.job_id) == CANCELLED:
            ctx.log(f"{name}: not started, the job was cancelled")
            self.stopped = "cancelled"
            return False
        if name == "update" and not ctx.dry_run:
            hold = held_job(Holds(self.queue.folder), ctx.repo_root, ctx.job)
            if hold is not None:  # a rollback holds the live pipeline: the queue must not roll it forward
                self.queue.start_step(self.job_id, name, self.worker_id)
                cause = held_message(hold)
                ctx.log(f"{name}: failed: {cause}")
                self.queue.fail_step(self.job_id, name, cause, self.worker_id)
                self.stopped = "held"
                return False
        record = self.queue.start_step(self.job_id, name, self.worker_id)
        ctx.log(f"{name}: started (attempt {record.attempts})")
        ctx.job = self.queue.get(self.job_id)
        return True

    def finished(self, name: str, data: Dict[str, str], skipped: bool) -> None:
        queue = self.queue
        if queue.state_of(self.job_id) == CANCELLED:
            # Cancelled while the step ran: what it did is recorded all the same, and an
            # update that got applied says so (the cancel came too late to stop it).
            queue.finish_step(self.job_id, name, data, skipped=skipped)
            if data.get("late_cancel"):
                queue.end_job(self.job_id, CANCELLED, "cancelled too late: applied")
            return
        final_state = _FINAL_STATES.get(data.get("outcome", ""))
        if final_state is not None:
            # The update step found the cluster ahead (superseded), in place (unchanged)
            # or the job cancelled before its apply: the job ends here, saying why.
            queue.finish_step(self.job_id, name, data, skipped=True, worker_id=self.worker_id)
            queue.end_job(self.job_id, final_state, f"{data['outcome']}: {data.get('reason', '')}")
            return
        queue.finish_step(self.job_id, name, data, skipped=skipped, worker_id=self.worker_id)

    def failed(self, name: str, cause: str) -> None:
        self.queue.fail_step(self.job_id, name, cause, self.worker_id)


def process_group(
    queue: Queue,
    jobs: Sequence[Job],
    repo_root: PathLike,
    show: Callable[[Job, str], None],
    worker_id: Optional[str] = None,
    dry_run: bool = False,
    live: Optional[Any] = None,
) -> List[Job]:
    """Deliver the leased jobs of one commit and environment (Leases.take_group), recording each step.

    The jobs' images are built and pushed concurrently, `build_concurrency` at a time (the
    commit's configuration), an image several of them share once: deliver_concurrently, as
    `run --commit` does. Then the jobs that got there are updated together, in delivery
    order (`update_together`: one Pachyderm transaction, or none applied when one of them
    failed or is held; a job the user cancelled is left out). A job stops at its first
    failing step (failed, retryable) and before any step once cancelled. Each line a job
    logs is stored in its log and shown through `show`, one whole line at a time. Returns
    the jobs as the queue has them after.
    """
    queues = ThreadQueues(queue)
    showing = threading.Lock()

    def log_for(job: Job) -> Callable[[str], None]:
        def log(line: str) -> None:
            queues.current().logs.append(job.id, line)
            with showing:
                show(job, line)

        return log

    missing = work_tree_gone(repo_root)
    if missing:
        # Checked first: git run in a folder that is gone says the commit does not exist,
        # which would end the jobs as superseded for a reason that is not true.
        return [
            _fail_unstarted(queue, job, log_for(job), worker_id, f"{missing}; {_retry_elsewhere(job.id)}")
            for job in jobs
        ]
    deliverable: List[Job] = []
    for job in jobs:
        gone = unreachable(job.commit, job.branch, Path(repo_root))
        if gone:
            # amended, rebased, reset or collected: such a commit is never delivered
            log_for(job)(f"superseded: {gone}")
            queue.end_job(job.id, SUPERSEDED, f"superseded: {gone}")
            continue
        deliverable.append(job)

    def build_and_push(job: Job, _say: Callable[[str], None], shared: SharedImages) -> Tuple[Member, bool]:
        """One job's steps before the update, in whichever thread deliver_concurrently gives it."""
        try:
            context = StepContext(
                repo_root=Path(repo_root),
                git_dir=queue.folder.parent,
                job=job,
                log=log_for(job),
                results={
                    record.name: dict(record.result)
                    for record in job.steps
                    if record.state in (STEP_DONE, STEP_SKIPPED)
                },
                dry_run=dry_run,
                is_cancelled=lambda: queues.current().state_of(job.id) == CANCELLED,
                shared=shared,
                live=live,
            )
            hooks = _QueueHooks(queues, job.id, worker_id)
            run = run_steps(context, hooks, only=BEFORE_UPDATE)
            return Member(context, hooks, run), "update" not in context.results
        finally:
            queues.close_mine()

    limit = 1 if dry_run else _build_concurrency(repo_root, deliverable)
    members: List[Member] = []
    blockers: List[Tuple[str, str]] = []
    ahead = read_ahead_for(repo_root, queue.folder.parent, deliverable, dry_run)
    try:
        for member, to_update in deliver_concurrently(deliverable, build_and_push, limit, lambda line: None):
            pipeline, hooks = member.ctx.job.pipeline, member.hooks
            if member.run.error:
                blockers.append((pipeline, "failed"))
            elif member.run.cancelled:
                stopped = getattr(hooks, "stopped", "")
                if stopped != "cancelled":  # the user's cancel leaves the job out, holding nothing back
                    blockers.append((pipeline, stopped or "stopped"))
            elif to_update:
                members.append(member)
        update_together(members, blockers, ahead=ahead)
    finally:
        if ahead is not None:
            ahead.close()
    return [queue.get(job.id) for job in jobs]


def read_ahead_for(repo_root: PathLike, git_dir: Path, jobs: Sequence[Job], dry_run: bool) -> Optional[ReadAhead]:
    """Questions the jobs' steps will ask, started before their builds: the builds' questions
    about git's configuration (build.ask_git_ahead), and the live read of the jobs still to
    be updated (earlyread.py), which is returned; None in a dry run (it talks to the cluster
    no more than the update step shows) and when every job's update is done already."""
    for branch in sorted({job.branch for job in jobs}):
        build.ask_git_ahead(Path(repo_root), branch)
    if dry_run:
        return None
    done = (STEP_DONE, STEP_SKIPPED)  # as build_and_push finds the steps to run
    to_update = [job for job in jobs if not any(r.name == "update" and r.state in done for r in job.steps)]
    return read_ahead(Path(repo_root), git_dir, to_update)


def _build_concurrency(repo_root: PathLike, jobs: Sequence[Job]) -> int:
    """How many images of the group build at once: the commit's `build_concurrency`."""
    if not jobs:
        return 1
    try:
        return load_config_at(Path(repo_root), jobs[0].commit).build_concurrency
    except ConfigError:
        return DEFAULT_BUILD_CONCURRENCY  # the build step reports what is wrong with the configuration


def work_tree_gone(repo_root: PathLike) -> str:
    """Why the work tree a worker was started for cannot deliver any more ("" while it can).

    The worker is started for the work tree of the commit that queued it; that folder may be
    removed (`git worktree remove`, rm -r) or the repository moved while jobs wait.
    """
    root = Path(repo_root)
    if not root.is_dir():
        return f"the work tree {root} is gone (moved or deleted) since the job was queued"
    if not (root / ".git").exists():
        return f"the work tree {root} is no git work tree any more (its .git is gone)"
    return ""


def _retry_elsewhere(job_id: int) -> str:
    return f"nothing was delivered: run `pachhook retry {job_id}` in a work tree of the repository"


def _fail_unstarted(queue: Queue, job: Job, log: Callable[[str], None], worker_id: Optional[str], cause: str) -> Job:
    """Fail a job at its first step not done, with cause, without running anything."""
    done = {record.name for record in job.steps if record.state in (STEP_DONE, STEP_SKIPPED)}
    step = next((name for name in STEP_NAMES if name not in done), STEP_NAMES[-1])
    queue.start_step(job.id, step, worker_id)
    log(f"{step}: failed: {cause}")
    return queue.fail_step(job.id, step, cause, worker_id)


def _cancel_check(queue: Queue, job_id: int) -> Callable[[], bool]:
    return lambda: queue.state_of(job_id) == CANCELLED


# The steps before the update: each job of a group runs them on its own.
BEFORE_UPDATE = tuple(name for name in STEP_NAMES if name != "update")

# Step outcomes that end a job, and the job state each leaves it in.
_FINAL_STATES = {"superseded": SUPERSEDED, "unchanged": DONE, "cancelled": CANCELLED}


class DrainSummary:
    __slots__ = ("done", "failed", "other")

    def __init__(self) -> None:
        self.done: List[int] = []
        self.failed: List[int] = []
        self.other: List[int] = []  # cancelled meanwhile, lease lost


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{time.time():.0f}"


def drain(
    repo_root: PathLike,
    queue: Optional[Queue] = None,
    worker_id: Optional[str] = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    progress: Optional[Progress] = None,
    once: bool = False,
    dry_run: bool = False,
    live: Optional[Any] = None,
) -> DrainSummary:
    """Lease and run jobs until none may run now (or after one commit's jobs with `once`).

    The jobs of one commit and environment are leased and delivered together (process_group).
    `live` is a terminal's live display of builds and pushes (deliver/ttyprogress.py) for
    `pachhook run`.
    """
    own_queue = queue is None
    if queue is None:
        queue = Queue(gitrepo.git_common_dir(repo_root))
    worker_id = worker_id or new_worker_id()
    summary = DrainSummary()
    say = progress or (lambda line: None)
    try:
        while True:
            jobs = queue.leases.take_group(worker_id, lease_seconds)
            if not jobs:
                break
            labels = {job.id: f"job {job.id} {job.pipeline}@{job.commit[:12]}" for job in jobs}
            for job in jobs:
                say(f"{labels[job.id]}: running")

            def show(job: Job, line: str, labels: Dict[int, str] = labels) -> None:
                say(f"{labels[job.id]}: {line}")

            ids = [job.id for job in jobs]
            heartbeat = _Heartbeat(os.path.dirname(queue.folder_str), ids, worker_id, lease_seconds)
            try:
                with gitrepo.config_snapshot():  # one commit's delivery reads git's configuration once
                    finals = process_group(queue, jobs, repo_root, show, worker_id, dry_run, live)
            except LeaseLost as error:
                say(f"{', '.join(labels.values())}: {error}")
                for job_id in ids:
                    queue.leases.release(job_id, worker_id)  # the ones still this worker's
                summary.other.extend(ids)
                continue
            except BaseException:
                # Interrupted (Ctrl-C, SIGTERM): hand the jobs back instead of letting their leases run out.
                for job_id in ids:
                    queue.leases.release(job_id, worker_id)
                raise
            finally:
                heartbeat.stop()
            for final in finals:
                say(f"{labels[final.id]}: {final.state}")
                (
                    summary.done if final.state == DONE else summary.failed if final.state == FAILED else summary.other
                ).append(final.id)
            if once:
                break
    finally:
        if own_queue:
            queue.close()
    return summary


class _Heartbeat:
    """Renews a lease from a thread while a (possibly long) step runs."""

    def __init__(self, common_dir: str, job_ids: List[int], worker_id: str, lease_seconds: float) -> None:
        self._stop = threading.Event()
        self._args = (common_dir, job_ids, worker_id, lease_seconds)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        common_dir, job_ids, worker_id, lease_seconds = self._args
        queue = Queue(common_dir)  # sqlite connections stay in the thread that made them
        try:
            while not self._stop.wait(max(lease_seconds / 3.0, 0.05)):
                if not queue.leases.renew_all(job_ids, worker_id, lease_seconds):
                    return
        finally:
            queue.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def prune_history(repo_root: PathLike, queue: Queue, say: Progress) -> int:
    """Finished jobs past `keep_jobs` per pipeline go to the provenance ledger (after a drain,
    never on the hook path); the live version's job and a held version's job stay."""
    try:
        keep = load_config(repo_root).keep_jobs
    except ConfigError:
        keep = DEFAULT_KEEP_JOBS  # the configuration's problems are reported where it is used
    # by the pipeline's name as jobs know it (its template's)
    held = {hold.name or hold.pipeline: hold.version for hold in Holds(queue.folder).all()}
    moved = prune(queue.database, keep, held)
    if moved:
        say(f"{moved} past job{'s' if moved != 1 else ''} moved to the provenance ledger (keep_jobs = {keep})")
    return moved


def _notify_failures(repo_root: object, queue: Queue, failed: List[int]) -> None:
    """A desktop notification per failed job, unless the configuration says `notify = false`."""
    if not failed:
        return
    from pachhook.core.config import ConfigError, load_config
    from pachhook.deliver.notify import notify_failure
    from pachhook.queue.attention import describe

    try:
        if not load_config(repo_root).notify:
            return
    except ConfigError:
        pass  # the failure itself says what is wrong with the configuration
    for job_id in failed:
        job = queue.get(job_id)
        notify_failure(f"pachhook: delivery of {job.pipeline} failed", describe(job))


def run_worker(
    repo_root: PathLike,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    progress: Optional[Progress] = None,
    common_dir: Optional[PathLike] = None,
) -> int:
    """The background worker's life: take the lock, drain, exit when the queue is empty.

    After letting the lock go it looks once more: a commit queued between its last look
    and the release saw the lock held and started no worker, so that job is this
    worker's to run. While another worker holds a job's lease it waits: if that worker
    died, the job is this one's once the lease ends.
    """
    common = common_dir if common_dir is not None else gitrepo.git_common_dir(repo_root)
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
            drained = drain(repo_root, queue=queue, worker_id=worker_id, lease_seconds=lease_seconds, progress=say)
            _notify_failures(repo_root, queue, drained.failed)
            prune_history(repo_root, queue, say)
            expiry = queue.leases.next_expiry()
            if not queue.leases.ready() and expiry is not None and expiry > time.time():
                # A job still leased: its worker may have died, and then nobody takes it up
                # before the next commit. Wait for the lease to end (or be renewed), looking
                # every second: a commit queued meanwhile starts no worker while this one
                # holds the lock, so its job must not wait for the lease too.
                time.sleep(min(expiry - time.time() + 0.2, 1.0))
                continue
            lock.release()
            if not queue.leases.ready() or not lock.acquire():
                break
            lock.write_owner()
        say(f"worker {worker_id} finished: queue empty")
        return 0
    finally:
        lock.release()
        queue.close()
