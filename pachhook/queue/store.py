"""The delivery queue of a repository: its jobs (one per commit and pipeline) and their steps.

`Queue` opens the database (queue/database.py: file, schema, recovery, transactions) and
holds the jobs and their step records; its other concerns are parts with their own
modules: `queue.leases` (queue/leases.py: who runs what, what may run next),
`queue.logs` and `queue.problems` (queue/joblog.py), `queue.templates` (the parse cache,
queue/templatecache.py).
"""

from __future__ import annotations

import os
import time

from pachhook.queue.database import DB_NAME, FOLDER, Database, Transaction
from pachhook.queue.states import (
    CANCELLED,
    DONE,
    FAILED,
    PENDING,
    QUEUED,
    RUNNING,
    STEP_DONE,
    STEP_FAILED,
    STEP_NAMES,
    STEP_RUNNING,
    STEP_SKIPPED,
    SUPERSEDED,
)
from pachhook.queue.templatecache import TemplateCache
from pachhook.spec.ordering import CycleError, dependency_order

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    import sqlite3
    from pathlib import Path
    from typing import Any, Dict, List, Optional, Sequence, Tuple

    from pachhook.queue.joblog import JobLogs, Problems
    from pachhook.queue.jobs import Job, StepRecord
    from pachhook.queue.leases import Leases

# Job states that still lead to a delivery.
LIVE_STATES = (QUEUED, RUNNING)


class QueueError(Exception):
    """A request the queue refuses (unknown job, retry of a running job...); one line."""


class LeaseLost(QueueError):
    """The worker's lease on a job expired and another worker holds it now."""


class NewJob:
    """What `enqueue_commit` needs to know about one pipeline of a commit."""

    __slots__ = ("pipeline", "template", "image", "inputs", "fingerprint")

    def __init__(
        self, pipeline: str, template: str, image: str = "", inputs: Sequence[str] = (), fingerprint: str = ""
    ) -> None:
        self.pipeline = pipeline
        self.template = template
        self.image = image
        self.inputs = tuple(inputs)  # pfs input repos: pipelines of the same commit to run first
        self.fingerprint = fingerprint  # what the delivery depends on (template, Dockerfile, context)

    def __repr__(self) -> str:
        return f"NewJob({self.pipeline!r}, {self.template!r}, image={self.image!r}, inputs={self.inputs!r})"


class EnqueueOutcome:
    """Ids and pipelines of the jobs recorded (and found recorded) by `enqueue_commit`."""

    __slots__ = ("created", "existing", "superseded")

    def __init__(self) -> None:
        self.created: List[Tuple[int, str]] = []  # (job id, pipeline)
        self.existing: List[Tuple[int, str]] = []  # already recorded for this commit
        self.superseded: List[int] = []


class Queue:
    """The queue of one repository, opened on its git common dir: its jobs and their steps.

    Leases, logs, problems and the template cache are parts of it with their own classes:
    `queue.leases`, `queue.logs`, `queue.problems`, `queue.templates`.
    """

    def __init__(self, git_common_dir: Any, timeout: float = 30.0) -> None:
        self.database = Database(os.path.join(os.fspath(git_common_dir), FOLDER), timeout)
        self.templates = TemplateCache(self.database)
        self._leases: Optional[Leases] = None
        self._logs: Optional[JobLogs] = None
        self._problems: Optional[Problems] = None

    # The parts the post-commit hook does not use (it never leases or logs, and records a
    # problem only when it meets one) are imported when first asked for: the hook imports
    # no more modules than before the split.

    @property
    def leases(self) -> Leases:
        if self._leases is None:
            from pachhook.queue.leases import Leases

            self._leases = Leases(self.database, self.get)
        return self._leases

    @property
    def logs(self) -> JobLogs:
        if self._logs is None:
            from pachhook.queue.joblog import JobLogs

            self._logs = JobLogs(self.database)
        return self._logs

    @property
    def problems(self) -> Problems:
        if self._problems is None:
            from pachhook.queue.joblog import Problems

            self._problems = Problems(self.database)
        return self._problems

    @property
    def _db(self) -> sqlite3.Connection:
        # Read each time: recovering from a corrupt file replaces the connection.
        return self.database.connection

    def _transaction(self) -> Transaction:
        return self.database.transaction()

    @property
    def folder_str(self) -> str:
        return self.database.folder_str

    @property
    def folder(self) -> Path:
        """`<git common dir>/pachhook`: the database, the worker's lock and log."""
        from pathlib import Path

        return Path(self.folder_str)

    @property
    def path(self) -> Path:
        return self.folder / DB_NAME

    @property
    def set_aside(self) -> Optional[str]:
        """Where a corrupt database was moved by this open, if it was."""
        return self.database.set_aside

    def recover_if_corrupt(self, error: Exception) -> bool:
        return self.database.recover_if_corrupt(error)

    def close(self) -> None:
        self.database.close()

    def __enter__(self) -> "Queue":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- enqueue ------------------------------------------------------------------

    def enqueue_commit(self, commit: str, branch: str, jobs: Sequence[NewJob], environment: str = "") -> EnqueueOutcome:
        """Record the jobs of one commit in one transaction.

        Jobs are inserted in spec.ordering's delivery order (QueueError for a dependency
        cycle, recording nothing); a job already recorded for (commit, pipeline) is not recorded twice. On a branch,
        each new job supersedes the branch's queued, never-started jobs of its pipeline.
        """
        outcome = EnqueueOutcome()
        now = time.time()
        try:
            ordered = dependency_order(jobs, lambda job: job.pipeline, lambda job: job.inputs)
        except CycleError as error:
            raise QueueError(str(error)) from None
        with self._transaction() as db:
            inserted: Dict[str, int] = {}
            for new in ordered:
                row = db.execute(
                    "SELECT id FROM jobs WHERE commit_sha = ? AND pipeline = ? AND state IN (?, ?, ?, ?)"
                    " ORDER BY id DESC LIMIT 1",
                    (commit, new.pipeline, QUEUED, RUNNING, DONE, FAILED),
                ).fetchone()
                if row is not None:
                    outcome.existing.append((int(row["id"]), new.pipeline))
                    continue
                cursor = db.execute(
                    "INSERT INTO jobs (commit_sha, branch, pipeline, template, image, fingerprint,"
                    " state, created_at, updated_at, environment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        commit,
                        branch,
                        new.pipeline,
                        new.template,
                        new.image,
                        new.fingerprint,
                        QUEUED,
                        now,
                        now,
                        environment,
                    ),
                )
                job_id = int(cursor.lastrowid or 0)  # an INSERT always sets it
                inserted[new.pipeline] = job_id
                db.executemany(
                    "INSERT INTO steps (job_id, name, position, state) VALUES (?, ?, ?, ?)",
                    [(job_id, name, position, PENDING) for position, name in enumerate(STEP_NAMES)],
                )
                needs = sorted({repo for repo in new.inputs if repo != new.pipeline})
                db.executemany(
                    "INSERT INTO job_needs (job_id, pipeline) VALUES (?, ?)",
                    [(job_id, repo) for repo in needs],
                )
                if branch:
                    older = [
                        int(r[0])
                        for r in db.execute(
                            # jobs_state: the queued jobs are few; by pipeline this walked its whole history
                            "SELECT id FROM jobs INDEXED BY jobs_state WHERE branch = ? AND pipeline = ? AND state = ?"
                            " AND started_at IS NULL AND id < ? AND commit_sha != ?",
                            (branch, new.pipeline, QUEUED, job_id, commit),
                        )
                    ]
                    db.executemany(
                        "UPDATE jobs SET state = ?, superseded_by = ?, updated_at = ? WHERE id = ?",
                        [(SUPERSEDED, job_id, now, old) for old in older],
                    )
                    outcome.superseded.extend(older)
            outcome.created = [(job_id, name) for name, job_id in inserted.items()]
        return outcome

    def enqueue(
        self,
        commit: str,
        branch: str,
        pipeline: str,
        template: str,
        image: str = "",
        inputs: Sequence[str] = (),
        fingerprint: str = "",
    ) -> Job:
        """Record one job (or return the one already recorded for this commit and pipeline)."""
        outcome = self.enqueue_commit(commit, branch, [NewJob(pipeline, template, image, tuple(inputs), fingerprint)])
        return self.get((outcome.created or outcome.existing)[0][0])

    # -- reading ------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        """The job with this id; QueueError when there is none."""
        job = self._load(job_id)
        if job is None:
            raise QueueError(f"no job {job_id}")
        return job

    def _load(self, job_id: int) -> Optional[Job]:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        return self._jobs_from_rows([row])[0]

    def _jobs_from_rows(self, rows: Sequence[sqlite3.Row]) -> List[Job]:
        import json

        from pachhook.queue.jobs import Job, StepRecord

        if not rows:
            return []
        ids = [row["id"] for row in rows]
        steps: Dict[int, List[StepRecord]] = {job_id: [] for job_id in ids}
        marks = ",".join("?" * len(ids))
        for srow in self._db.execute(f"SELECT * FROM steps WHERE job_id IN ({marks}) ORDER BY job_id, position", ids):
            steps[srow["job_id"]].append(
                StepRecord(
                    name=srow["name"],
                    state=srow["state"],
                    attempts=srow["attempts"],
                    started_at=srow["started_at"],
                    finished_at=srow["finished_at"],
                    result=json.loads(srow["result"]),
                    error=srow["error"],
                )
            )
        return [
            Job(
                id=row["id"],
                commit=row["commit_sha"],
                branch=row["branch"],
                pipeline=row["pipeline"],
                template=row["template"],
                image=row["image"],
                state=row["state"],
                created_at=row["created_at"],
                updated_at=row["updated_at"],
                superseded_by=row["superseded_by"],
                steps=steps[row["id"]],
                environment=row["environment"],
                reason=row["reason"],
            )
            for row in rows
        ]

    def list_jobs(self, all: bool = False, limit: Optional[int] = None) -> List[Job]:
        """Jobs, newest first; without `all`, superseded and cancelled jobs are left out."""
        sql = "SELECT * FROM jobs"
        params: List[Any] = []
        if not all:
            # a cancel that came too late (the update was applied) stays in sight
            sql += " WHERE state NOT IN (?, ?) OR reason LIKE 'cancelled too late%'"
            params += [SUPERSEDED, CANCELLED]
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._jobs_from_rows(self._db.execute(sql, params).fetchall())

    def jobs_for_commit(self, commit: str) -> List[Job]:
        """Jobs of a commit (full SHA, or an unambiguous prefix of one), newest first."""
        rows = self._db.execute(
            "SELECT * FROM jobs WHERE commit_sha = ? OR (length(?) >= 4 AND commit_sha LIKE ? || '%') ORDER BY id DESC",
            (commit, commit, commit.lower()),
        ).fetchall()
        return self._jobs_from_rows(rows)

    def inputs_of(self, job_id: int) -> List[str]:
        """The pipelines of the same commit this job waits for (its pfs input repos)."""
        return [
            r[0]
            for r in self._db.execute("SELECT pipeline FROM job_needs WHERE job_id = ? ORDER BY pipeline", (job_id,))
        ]

    def fingerprint_of(self, job_id: int) -> str:
        row = self._db.execute("SELECT fingerprint FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row[0] if row else ""

    def last_delivered_commit(self, pipeline: str) -> Optional[str]:
        """The commit of the newest job that delivered `pipeline`, None if none did."""
        row = self._db.execute(
            "SELECT commit_sha FROM jobs WHERE pipeline = ? AND state = ? ORDER BY id DESC LIMIT 1",
            (pipeline, DONE),
        ).fetchone()
        return row[0] if row else None

    def baselines(self, pipelines: Optional[Sequence[str]] = None, environment: Optional[str] = None) -> Dict[str, str]:
        """Per pipeline, the fingerprint of what was delivered or is on its way to delivery.

        That is the newest job that is done, queued or running (in `environment`, when
        given: each environment has pipelines of its own): a commit whose pipeline
        fingerprint equals it would deliver nothing new. With `pipelines`, only theirs, one
        indexed lookup each (jobs_pipeline, newest first): the cost does not grow with history.
        """
        # jobs queued before environments existed (schema 1) were the implicit one's
        where = "" if environment is None else " AND environment IN (?, '')"
        extra: Tuple[Any, ...] = () if environment is None else (environment,)
        if pipelines is not None:
            found: Dict[str, str] = {}
            for name in dict.fromkeys(pipelines):
                row = self._db.execute(
                    "SELECT fingerprint FROM jobs INDEXED BY jobs_pipeline WHERE pipeline = ? AND state IN (?, ?, ?)"
                    f"{where} ORDER BY id DESC LIMIT 1",
                    (name, DONE, QUEUED, RUNNING, *extra),
                ).fetchone()
                if row is not None:
                    found[name] = row[0]
            return found
        rows = self._db.execute(
            "SELECT pipeline, fingerprint FROM jobs WHERE id IN ("
            f" SELECT max(id) FROM jobs WHERE state IN (?, ?, ?){where} GROUP BY pipeline)",
            (DONE, QUEUED, RUNNING, *extra),
        )
        return {row[0]: row[1] for row in rows}

    def _check_owner(self, db: sqlite3.Connection, job_id: int, worker_id: Optional[str]) -> sqlite3.Row:
        row = db.execute("SELECT state, lease_owner FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise QueueError(f"no job {job_id}")
        if worker_id is not None and row["lease_owner"] != worker_id:
            raise LeaseLost(f"job {job_id} is leased by another worker now")
        return row

    def start_step(self, job_id: int, step: str, worker_id: Optional[str] = None) -> StepRecord:
        now = time.time()
        with self._transaction() as db:
            self._check_owner(db, job_id, worker_id)
            db.execute(
                "UPDATE steps SET state = ?, attempts = attempts + 1, started_at = ?, finished_at = NULL,"
                " error = '' WHERE job_id = ? AND name = ?",
                (STEP_RUNNING, now, job_id, step),
            )
            db.execute("UPDATE jobs SET updated_at = ? WHERE id = ?", (now, job_id))
        return self.get(job_id).step(step)

    def finish_step(
        self,
        job_id: int,
        step: str,
        result: Optional[Dict[str, str]] = None,
        skipped: bool = False,
        worker_id: Optional[str] = None,
    ) -> Job:
        """Record a step's result; the job is done once every step is done or skipped."""
        import json

        now = time.time()
        with self._transaction() as db:
            row = self._check_owner(db, job_id, worker_id)
            db.execute(
                "UPDATE steps SET state = ?, finished_at = ?, result = ?, error = '' WHERE job_id = ? AND name = ?",
                (STEP_SKIPPED if skipped else STEP_DONE, now, json.dumps(result or {}, sort_keys=True), job_id, step),
            )
            left = db.execute(
                "SELECT count(*) FROM steps WHERE job_id = ? AND state NOT IN (?, ?)",
                (job_id, STEP_DONE, STEP_SKIPPED),
            ).fetchone()[0]
            if left == 0 and row["state"] == RUNNING:
                db.execute(
                    "UPDATE jobs SET state = ?, lease_owner = NULL, lease_expires = NULL, updated_at = ? WHERE id = ?",
                    (DONE, now, job_id),
                )
            else:
                db.execute("UPDATE jobs SET updated_at = ? WHERE id = ?", (now, job_id))
        return self.get(job_id)

    def fail_step(self, job_id: int, step: str, error: str, worker_id: Optional[str] = None) -> Job:
        """Record a step's failure (a one-line cause) and fail the job; `retry` queues it again."""
        now = time.time()
        error = " ".join(error.split()) or "failed"
        with self._transaction() as db:
            row = self._check_owner(db, job_id, worker_id)
            db.execute(
                "UPDATE steps SET state = ?, finished_at = ?, error = ? WHERE job_id = ? AND name = ?",
                (STEP_FAILED, now, error, job_id, step),
            )
            new_state = FAILED if row["state"] == RUNNING else row["state"]
            db.execute(
                "UPDATE jobs SET state = ?, lease_owner = NULL, lease_expires = NULL, updated_at = ? WHERE id = ?",
                (new_state, now, job_id),
            )
        return self.get(job_id)

    # -- operator actions -----------------------------------------------------------

    def retry(self, job_id: int) -> Job:
        """Queue a failed, cancelled or superseded job again; its done steps stay done."""
        return self.retry_together(job_id)[0]

    def retry_together(self, job_id: int) -> List[Job]:
        """Queue a job again (as `retry`) with the failed jobs of its commit and environment.

        A commit's updates for one environment are applied together or not at all, so a
        job whose update was held back by another's failure must not later go on its own,
        nor the other without it. Returns the job first, then the others queued with it.
        """
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT state, commit_sha, environment FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise QueueError(f"no job {job_id}")
            if row["state"] not in (FAILED, CANCELLED, SUPERSEDED):
                raise QueueError(
                    f"job {job_id} is {row['state']}: only failed, cancelled or superseded jobs can be retried"
                )
            others = [
                int(other[0])
                for other in db.execute(
                    "SELECT id FROM jobs WHERE commit_sha = ? AND environment = ? AND state = ? AND id != ?"
                    " ORDER BY id",
                    (row["commit_sha"], row["environment"], FAILED, job_id),
                )
            ]
            _requeue(db, job_id, row["state"], now)
            for other in others:
                _requeue(db, other, FAILED, now)
        return [self.get(job_id)] + [self.get(other) for other in others]

    def cancel(self, job_id: int) -> Job:
        """Cancel a queued job, or a running one (its worker stops before the next step)."""
        with self._transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise QueueError(f"no job {job_id}")
            if row["state"] not in (QUEUED, RUNNING, FAILED):
                raise QueueError(f"job {job_id} is {row['state']}: nothing to cancel")
            db.execute(
                "UPDATE jobs SET state = ?, lease_owner = NULL, lease_expires = NULL, updated_at = ? WHERE id = ?",
                (CANCELLED, time.time(), job_id),
            )
        return self.get(job_id)

    def supersede_unstarted(self, commits: Sequence[str], reason: str) -> List[int]:
        """Supersede the never-started jobs of `commits` (rewritten by amend or rebase)."""
        if not commits:
            return []
        marks = ",".join("?" * len(commits))
        with self._transaction() as db:
            ids = [
                int(row[0])
                for row in db.execute(
                    f"SELECT id FROM jobs WHERE state = ? AND started_at IS NULL AND commit_sha IN ({marks})",
                    (QUEUED, *commits),
                )
            ]
            db.executemany(
                "UPDATE jobs SET state = ?, reason = ?, updated_at = ? WHERE id = ?",
                [(SUPERSEDED, reason, time.time(), job_id) for job_id in ids],
            )
        return ids

    def unstarted_commits(self, branch: str) -> List[str]:
        """Commits of `branch` with jobs still queued and never started."""
        rows = self._db.execute(
            "SELECT DISTINCT commit_sha FROM jobs WHERE branch = ? AND state = ? AND started_at IS NULL",
            (branch, QUEUED),
        )
        return [row[0] for row in rows]

    def end_job(self, job_id: int, state: str, reason: str) -> Job:
        """Give a job its final state and the one line saying why (superseded by the live
        commit, unchanged, cancelled too late...); whoever holds it lets go of it."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, reason = ?, lease_owner = NULL, lease_expires = NULL, updated_at = ?"
                " WHERE id = ?",
                (state, " ".join(reason.split()), time.time(), job_id),
            )
        return self.get(job_id)

    def state_of(self, job_id: int) -> str:
        row = self._db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise QueueError(f"no job {job_id}")
        return row[0]

    def cluster_failures(self, window: int = 50) -> List[Tuple[str, str, str, str, str]]:
        """(pipeline, commit, cluster job, job state, reason) for each pipeline whose newest
        delivered job (among the `window` newest jobs) saw its cluster job fail after the
        update (deliver/stamp.py records job_state in the update step's result).

        For the post-commit hook: SQLite reads the JSON, so the hook imports no json module.
        """
        rows = self._db.execute(
            "SELECT j.pipeline, j.commit_sha, json_extract(s.result, '$.cluster_job'),"
            " json_extract(s.result, '$.job_state'), json_extract(s.result, '$.job_reason')"
            " FROM jobs j JOIN steps s ON s.job_id = j.id AND s.name = 'update'"
            " WHERE j.id IN (SELECT MAX(id) FROM jobs WHERE state = ? AND id > (SELECT MAX(id) FROM jobs) - ?"
            " GROUP BY pipeline)"
            " AND json_extract(s.result, '$.job_state') IN ('JOB_FAILURE', 'JOB_KILLED', 'JOB_UNRUNNABLE')"
            " ORDER BY j.id DESC",
            (DONE, window),
        )
        return [(str(r[0]), str(r[1]), str(r[2] or "?"), str(r[3]), str(r[4] or "")) for r in rows]


def _requeue(db: sqlite3.Connection, job_id: int, state: str, now: float) -> None:
    """Queue a failed, cancelled or superseded job again (inside the caller's transaction)."""
    db.execute(
        "UPDATE steps SET state = ? WHERE job_id = ? AND state IN (?, ?)",
        (PENDING, job_id, STEP_FAILED, STEP_RUNNING),
    )
    if state in (CANCELLED, SUPERSEDED):
        # the update step that ended it (superseded by the cluster, cancelled) runs
        # again: the cluster's order is asked afresh
        db.execute("UPDATE steps SET state = ? WHERE job_id = ? AND name = 'update'", (PENDING, job_id))
    db.execute(
        "UPDATE jobs SET state = ?, superseded_by = NULL, reason = '', lease_owner = NULL,"
        " lease_expires = NULL, updated_at = ? WHERE id = ?",
        (QUEUED, now, job_id),
    )


def open_queue(cwd: Any = None) -> Queue:
    """The queue of the repository around `cwd`; gitrepo.GitError outside a repository."""
    from pachhook.core import gitrepo

    return Queue(gitrepo.git_common_dir(cwd))
