"""Leases: which worker holds which job, until when, and which job may be taken next.

A worker holds a job through a lease (owner and expiry time); a worker that dies stops
renewing it, and once it expires the job can be leased again and resumes at its first
step that is not done. Jobs are leased oldest first, but a job waits while an older job
of the same pipeline is queued or running (deliveries of one pipeline never overtake
each other), and while a pipeline of the same commit that it reads as a pfs input is
queued or running. Jobs of one commit are inserted in dependency order, so a job only
ever waits for older ones and the oldest live job can always run.

The worker leases a commit's jobs for one environment together (`take_group`): their
builds and pushes run one by one, their updates in one Pachyderm transaction. Such a
group is leased only when every live job in it may run; a job of the group that waited
would otherwise be updated on its own later, outside the commit's transaction.
"""

from __future__ import annotations

import time

from pachhook.queue.states import PENDING, QUEUED, RUNNING, STEP_RUNNING

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    from typing import Any, Callable, Dict, List, Optional, Set, Tuple

    from pachhook.queue.database import Database
    from pachhook.queue.jobs import Job

# Jobs that may be leased now, as the FROM and WHERE of a query with the parameter :now.
# The older-job check goes through jobs_state (the few queued and running jobs): through
# jobs_pipeline SQLite walked the pipeline's whole history, 125 ms a lease at 100k jobs.
LEASABLE = """
    FROM jobs j
    WHERE (j.state = 'queued' OR (j.state = 'running' AND j.lease_expires < :now))
    AND NOT EXISTS (
        SELECT 1 FROM jobs o INDEXED BY jobs_state WHERE o.pipeline = j.pipeline AND o.id < j.id
        AND o.state IN ('queued', 'running'))
    AND NOT EXISTS (
        SELECT 1 FROM job_needs n JOIN jobs k
            ON k.commit_sha = j.commit_sha AND k.pipeline = n.pipeline AND k.id < j.id
        WHERE n.job_id = j.id AND k.state IN ('queued', 'running'))
"""


class Leases:
    def __init__(self, database: Database, load: Callable[[int], Job]) -> None:
        self.database = database
        self._load = load  # the queue's job reader

    def take(self, worker_id: str, lease_seconds: float) -> Optional[Job]:
        """Lease the oldest job that may run now (queued, or running with an expired lease)."""
        now = time.time()
        with self.database.transaction() as db:
            row = db.execute("SELECT j.id " + LEASABLE + " ORDER BY j.id LIMIT 1", {"now": now}).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = ?, lease_owner = ?, lease_expires = ?, updated_at = ?,"
                " started_at = coalesce(started_at, ?) WHERE id = ?",
                (RUNNING, worker_id, now + lease_seconds, now, now, row[0]),
            )
        return self._load(row[0])

    def take_group(self, worker_id: str, lease_seconds: float) -> List[Job]:
        """Lease, together, the live jobs of the oldest commit and environment that may all run now.

        Returns them in the order they were queued (the commit's delivery order), or [] when
        no such group exists.
        """
        now = time.time()
        with self.database.transaction() as db:
            ids = _runnable_group(db, now)
            db.executemany(
                "UPDATE jobs SET state = ?, lease_owner = ?, lease_expires = ?, updated_at = ?,"
                " started_at = coalesce(started_at, ?) WHERE id = ?",
                [(RUNNING, worker_id, now + lease_seconds, now, now, job_id) for job_id in ids],
            )
        return [self._load(job_id) for job_id in ids]

    def ready(self) -> bool:
        """Whether `take_group` would find jobs now."""
        return bool(_runnable_group(self.database.connection, time.time()))

    def has_work(self) -> bool:
        """Whether a job is queued or held by an expired lease (may still wait for others)."""
        row = self.database.connection.execute(
            "SELECT 1 FROM jobs WHERE state = 'queued' OR (state = 'running' AND lease_expires < ?) LIMIT 1",
            (time.time(),),
        ).fetchone()
        return row is not None

    def next_expiry(self) -> Optional[float]:
        """When the earliest lease of a running job ends (epoch seconds); None if none runs."""
        query = "SELECT min(lease_expires) FROM jobs WHERE state = ?"
        row = self.database.connection.execute(query, (RUNNING,)).fetchone()
        return row[0] if row is not None else None

    def renew_all(self, job_ids: List[int], worker_id: str, lease_seconds: float) -> bool:
        """Extend the leases of a group; False when this worker no longer holds any of them."""
        return any([self.renew(job_id, worker_id, lease_seconds) for job_id in job_ids])

    def renew(self, job_id: int, worker_id: str, lease_seconds: float) -> bool:
        """Extend a lease; False when this worker no longer holds the job."""
        now = time.time()
        with self.database.transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET lease_expires = ? WHERE id = ? AND lease_owner = ? AND state = ?",
                (now + lease_seconds, job_id, worker_id, RUNNING),
            )
            return cursor.rowcount == 1

    def release(self, job_id: int, worker_id: str) -> None:
        """Give a leased job back (queued again) without failing it, e.g. on shutdown."""
        with self.database.transaction() as db:
            db.execute("UPDATE steps SET state = ? WHERE job_id = ? AND state = ?", (PENDING, job_id, STEP_RUNNING))
            db.execute(
                "UPDATE jobs SET state = ?, lease_owner = NULL, lease_expires = NULL, updated_at = ?"
                " WHERE id = ? AND lease_owner = ? AND state = ?",
                (QUEUED, time.time(), job_id, worker_id, RUNNING),
            )


def _runnable_group(db: Any, now: float) -> List[int]:
    """The ids of the oldest (commit, environment) group whose live jobs may all be leased now.

    Reads only the live jobs (queued and running: few, through jobs_state) and their needs.
    A member may run when it is queued or its lease expired, no older live job of its
    pipeline lies outside the group, and no older live job of its commit that it reads does.
    """
    live = db.execute(
        "SELECT id, commit_sha, environment, pipeline, state, lease_expires FROM jobs INDEXED BY jobs_state"
        " WHERE state IN (?, ?) ORDER BY id",
        (QUEUED, RUNNING),
    ).fetchall()
    groups: Dict[Tuple[str, str], List[Any]] = {}
    for row in live:
        groups.setdefault((row[1], row[2]), []).append(row)
    for (commit, _), members in groups.items():  # oldest group first: dicts keep insertion order
        ids = {row[0] for row in members}
        if any(row[4] == RUNNING and (row[5] is None or row[5] >= now) for row in members):
            continue  # another worker holds part of it
        marks = ",".join("?" * len(ids))
        needs: Dict[int, List[str]] = {}
        for job_id, pipeline in db.execute(f"SELECT job_id, pipeline FROM job_needs WHERE job_id IN ({marks})", [*ids]):
            needs.setdefault(job_id, []).append(pipeline)
        if not any(_waits(member, live, ids, commit, needs.get(member[0], [])) for member in members):
            return sorted(ids)
    if any(row[4] == RUNNING and row[5] is not None and row[5] >= now for row in live):
        return []  # a group is in hand: what it holds back runs after it
    # Nothing runs and no group may: groups wait for each other (a commit queued again later
    # for another pipeline interleaves its ids with a newer commit's). The oldest job that may
    # run on its own goes alone, so the queue never stalls.
    for row in live:
        own = {row[0]}
        reads = [found[0] for found in db.execute("SELECT pipeline FROM job_needs WHERE job_id = ?", (row[0],))]
        if not _waits(row, live, own, row[1], reads):
            return [row[0]]
    return []


def _waits(member: Any, live: List[Any], group: Set[int], commit: str, reads: List[str]) -> bool:
    """Whether an older live job outside the group holds `member` back: one of its pipeline,
    or one of its commit's pipelines that it reads."""
    for other in live:
        if other[0] >= member[0] or other[0] in group:
            continue
        if other[3] == member[3] or (other[1] == commit and other[3] in reads):
            return True
    return False
