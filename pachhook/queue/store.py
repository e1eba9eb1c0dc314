"""The delivery queue: SQLite in `<git common dir>/pachhook/queue.db`, shared by all worktrees.

Every state change is one `BEGIN IMMEDIATE` transaction, so committers and workers in
several processes never see half a change. Workers hold a job through a lease (owner and
expiry time); a worker that dies stops renewing it, and once it expires the job can be
leased again and resumes at its first step that is not done.

Order: jobs are leased oldest first, but a job waits while an older job of the same
pipeline is queued or running (deliveries of one pipeline never overtake each other),
and while a pipeline of the same commit that it reads as a pfs input is queued or
running. Jobs of one commit are inserted in dependency order, so a job only ever waits
for older ones and the oldest live job can always run.
"""

from __future__ import annotations

import os
import sqlite3
import time

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
from pachhook.spec.ordering import CycleError, dependency_order

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    from pathlib import Path
    from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

    from pachhook.queue.jobs import Job, StepRecord

SCHEMA_VERSION = 1
FOLDER = "pachhook"
DB_NAME = "queue.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    commit_sha TEXT NOT NULL,
    branch TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    template TEXT NOT NULL,
    image TEXT NOT NULL,
    fingerprint TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    superseded_by INTEGER,
    lease_owner TEXT,
    lease_expires REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, id);
CREATE INDEX IF NOT EXISTS jobs_pipeline ON jobs(pipeline, id);
CREATE INDEX IF NOT EXISTS jobs_commit ON jobs(commit_sha);
CREATE TABLE IF NOT EXISTS steps (
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    result TEXT NOT NULL DEFAULT '{}',
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, name)
);
CREATE TABLE IF NOT EXISTS job_needs (
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    pipeline TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_needs_job ON job_needs(job_id);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL,
    at REAL NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_job ON logs(job_id, id);
CREATE TABLE IF NOT EXISTS template_cache (
    blob TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS problems (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    commit_sha TEXT NOT NULL,
    message TEXT NOT NULL
);
"""

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


class RecordedProblem:
    """A problem `pachhook queue` recorded for a commit (bad configuration, a template it skipped)."""

    __slots__ = ("at", "commit", "message")

    def __init__(self, at: float, commit: str, message: str) -> None:
        self.at, self.commit, self.message = at, commit, message

    def as_dict(self) -> Dict[str, Any]:
        return {"at": self.at, "commit": self.commit, "message": self.message}


def queue_path(git_common_dir: Any) -> Path:
    from pathlib import Path

    return Path(git_common_dir) / FOLDER / DB_NAME


class Queue:
    """The queue of one repository, opened on its git common dir."""

    def __init__(self, git_common_dir: Any, timeout: float = 30.0) -> None:
        self.folder_str = os.path.join(os.fspath(git_common_dir), FOLDER)
        os.makedirs(self.folder_str, exist_ok=True)
        self.set_aside: Optional[str] = None  # where a corrupt database was moved by this open
        self._timeout = timeout
        try:
            self._open(timeout)
        except sqlite3.DatabaseError as error:
            if not _is_corrupt(error):
                raise
            self._db.close()
            self._recover(timeout, error)

    def _open(self, timeout: float) -> None:
        # isolation_level=None: transactions are begun explicitly, IMMEDIATE, so two
        # writers queue on the busy timeout instead of failing on a lock upgrade.
        self._db = sqlite3.connect(os.path.join(self.folder_str, DB_NAME), timeout=timeout, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        if self._db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            self._create()
        self._db.execute("PRAGMA synchronous = NORMAL")

    def recover_if_corrupt(self, error: Exception) -> bool:
        """After `error` from a query: if it says the file is damaged, move it aside and open
        a fresh queue (True); any other error is left to the caller (False)."""
        if not _is_corrupt(error):
            return False
        self._db.close()
        self._recover(self._timeout, error)
        return True

    def _recover(self, timeout: float, error: Exception) -> None:
        """Move a corrupt database aside (never delete it) and start a fresh one.

        Under a lock, and only if it is still corrupt: a second process that met the same
        corruption must not move aside the fresh queue the first one just started.
        """
        import fcntl
        import sys

        lock = os.open(os.path.join(self.folder_str, DB_NAME + ".recover.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._open(timeout)
                # quick_check reads every page (damage past the header shows only when read);
                # it runs on this rare path only
                if self._db.execute("PRAGMA quick_check").fetchone()[0] == "ok":
                    return  # another process has already started a fresh queue
                raise sqlite3.DatabaseError("database disk image is malformed")
            except sqlite3.DatabaseError as again:
                if not _is_corrupt(again):
                    raise
                self._db.close()
            path = os.path.join(self.folder_str, DB_NAME)
            aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            os.rename(path, aside)
            for suffix in ("-wal", "-shm"):  # the journal belongs to the old file
                if os.path.exists(path + suffix):
                    os.rename(path + suffix, aside + suffix)
            self._open(timeout)
        finally:
            os.close(lock)
        self.set_aside = aside
        message = (
            f"the queue database was unreadable ({error}): moved it to {aside} and started"
            " a fresh queue; jobs recorded in the old one are not in the new one"
        )
        self.record_problem(message)
        # Said here, once, by whichever command met it: the hook, status, a worker's log.
        print(f"pachhook: {message}", file=sys.stderr, flush=True)

    @property
    def folder(self) -> Path:
        """`<git common dir>/pachhook`: the database, the worker's lock and log."""
        from pathlib import Path

        return Path(self.folder_str)

    @property
    def path(self) -> Path:
        return self.folder / DB_NAME

    def _create(self) -> None:
        self._db.execute("PRAGMA journal_mode = WAL")
        with self._transaction():
            if self._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                return
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Queue":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- transactions -------------------------------------------------------------

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")

    def _transaction(self) -> "Queue._Tx":
        return Queue._Tx(self._db)

    # -- enqueue ------------------------------------------------------------------

    def enqueue_commit(self, commit: str, branch: str, jobs: Sequence[NewJob]) -> EnqueueOutcome:
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
                    " state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (commit, branch, new.pipeline, new.template, new.image, new.fingerprint, QUEUED, now, now),
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
                            "SELECT id FROM jobs WHERE branch = ? AND pipeline = ? AND state = ?"
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
            )
            for row in rows
        ]

    def list_jobs(self, all: bool = False, limit: Optional[int] = None) -> List[Job]:
        """Jobs, newest first; without `all`, superseded and cancelled jobs are left out."""
        sql = "SELECT * FROM jobs"
        params: List[Any] = []
        if not all:
            sql += " WHERE state NOT IN (?, ?)"
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

    def baselines(self) -> Dict[str, str]:
        """Per pipeline, the fingerprint of what was delivered or is on its way to delivery.

        That is the newest job that is done, queued or running: a commit whose pipeline
        fingerprint equals it would deliver nothing new.
        """
        rows = self._db.execute(
            "SELECT pipeline, fingerprint FROM jobs WHERE id IN ("
            " SELECT max(id) FROM jobs WHERE state IN (?, ?, ?) GROUP BY pipeline)",
            (DONE, QUEUED, RUNNING),
        )
        return {row[0]: row[1] for row in rows}

    # -- leases -------------------------------------------------------------------

    _LEASABLE = """
        FROM jobs j
        WHERE (j.state = 'queued' OR (j.state = 'running' AND j.lease_expires < :now))
        AND NOT EXISTS (
            SELECT 1 FROM jobs o WHERE o.pipeline = j.pipeline AND o.id < j.id
            AND o.state IN ('queued', 'running'))
        AND NOT EXISTS (
            SELECT 1 FROM job_needs n JOIN jobs k
                ON k.commit_sha = j.commit_sha AND k.pipeline = n.pipeline AND k.id < j.id
            WHERE n.job_id = j.id AND k.state IN ('queued', 'running'))
    """

    def lease_next(self, worker_id: str, lease_seconds: float) -> Optional[Job]:
        """Lease the oldest job that may run now (queued, or running with an expired lease)."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT j.id " + self._LEASABLE + " ORDER BY j.id LIMIT 1", {"now": now}).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = ?, lease_owner = ?, lease_expires = ?, updated_at = ?,"
                " started_at = coalesce(started_at, ?) WHERE id = ?",
                (RUNNING, worker_id, now + lease_seconds, now, now, row[0]),
            )
        return self.get(row[0])

    def has_leasable(self) -> bool:
        """Whether `lease_next` would find a job now."""
        row = self._db.execute("SELECT 1 " + self._LEASABLE + " LIMIT 1", {"now": time.time()}).fetchone()
        return row is not None

    def has_work(self) -> bool:
        """Whether a job is queued or held by an expired lease (may still wait for others)."""
        row = self._db.execute(
            "SELECT 1 FROM jobs WHERE state = 'queued' OR (state = 'running' AND lease_expires < ?) LIMIT 1",
            (time.time(),),
        ).fetchone()
        return row is not None

    def next_lease_expiry(self) -> Optional[float]:
        """When the earliest lease of a running job ends (epoch seconds); None if none runs."""
        row = self._db.execute("SELECT min(lease_expires) FROM jobs WHERE state = ?", (RUNNING,)).fetchone()
        return row[0] if row is not None else None

    def renew_lease(self, job_id: int, worker_id: str, lease_seconds: float) -> bool:
        """Extend a lease; False when this worker no longer holds the job."""
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET lease_expires = ? WHERE id = ? AND lease_owner = ? AND state = ?",
                (now + lease_seconds, job_id, worker_id, RUNNING),
            )
            return cursor.rowcount == 1

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

    def release(self, job_id: int, worker_id: str) -> None:
        """Give a leased job back (queued again) without failing it, e.g. on shutdown."""
        with self._transaction() as db:
            db.execute("UPDATE steps SET state = ? WHERE job_id = ? AND state = ?", (PENDING, job_id, STEP_RUNNING))
            db.execute(
                "UPDATE jobs SET state = ?, lease_owner = NULL, lease_expires = NULL, updated_at = ?"
                " WHERE id = ? AND lease_owner = ? AND state = ?",
                (QUEUED, time.time(), job_id, worker_id, RUNNING),
            )

    # -- operator actions -----------------------------------------------------------

    def retry(self, job_id: int) -> Job:
        """Queue a failed, cancelled or superseded job again; its done steps stay done."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise QueueError(f"no job {job_id}")
            if row["state"] not in (FAILED, CANCELLED, SUPERSEDED):
                raise QueueError(
                    f"job {job_id} is {row['state']}: only failed, cancelled or superseded jobs can be retried"
                )
            db.execute(
                "UPDATE steps SET state = ? WHERE job_id = ? AND state IN (?, ?)",
                (PENDING, job_id, STEP_FAILED, STEP_RUNNING),
            )
            db.execute(
                "UPDATE jobs SET state = ?, superseded_by = NULL, lease_owner = NULL, lease_expires = NULL,"
                " updated_at = ? WHERE id = ?",
                (QUEUED, now, job_id),
            )
        return self.get(job_id)

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

    def state_of(self, job_id: int) -> str:
        row = self._db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise QueueError(f"no job {job_id}")
        return row[0]

    # -- logs, problems, cache ------------------------------------------------------

    def append_log(self, job_id: int, line: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO logs (job_id, at, line) VALUES (?, ?, ?)", (job_id, time.time(), line.rstrip("\n")))

    def read_log(self, job_id: int) -> List[str]:
        return [r[0] for r in self._db.execute("SELECT line FROM logs WHERE job_id = ? ORDER BY id", (job_id,))]

    def read_log_entries(self, job_id: int) -> Iterator[sqlite3.Row]:
        return iter(self._db.execute("SELECT at, line FROM logs WHERE job_id = ? ORDER BY id", (job_id,)).fetchall())

    def record_problem(self, message: str, commit: str = "") -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO problems (at, commit_sha, message) VALUES (?, ?, ?)", (time.time(), commit, message)
            )

    def recent_problems(self, since: float = 0.0, limit: int = 5) -> List[RecordedProblem]:
        rows = self._db.execute(
            "SELECT at, commit_sha, message FROM problems WHERE at >= ? ORDER BY id DESC LIMIT ?",
            (since, limit),
        )
        return [RecordedProblem(r[0], r[1], r[2]) for r in rows]

    def cached_templates(self, keys: Sequence[str]) -> Dict[str, Any]:
        """Cached template parse results by key (missing ones left out).

        Stored with marshal, which is built in: json would cost an import on every commit.
        """
        if not keys:
            return {}
        import marshal

        marks = ",".join("?" * len(keys))
        rows = self._db.execute(f"SELECT blob, data FROM template_cache WHERE blob IN ({marks})", list(keys))
        found = {}
        for key, data in rows:
            try:
                found[key] = marshal.loads(data)
            except (EOFError, ValueError, TypeError):
                continue  # written by another Python version: parse again
        return found

    def cache_templates(self, entries: Dict[str, Any]) -> None:
        if not entries:
            return
        import marshal

        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO template_cache (blob, data) VALUES (?, ?)",
                [(key, marshal.dumps(data)) for key, data in entries.items()],
            )


def _is_corrupt(error: Exception) -> bool:
    """Whether an error opening the database means its file is damaged (not locked, not
    unwritable: those must not move a good queue aside)."""
    text = str(error).lower()
    return "file is not a database" in text or "malformed" in text


def open_queue(cwd: Any = None) -> Queue:
    """The queue of the repository around `cwd`; gitrepo.GitError outside a repository."""
    from pachhook.core import gitrepo

    return Queue(gitrepo.git_common_dir(cwd))
