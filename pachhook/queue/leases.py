"""Leases: which worker holds which job, until when, and which job may be taken next.

A worker holds a job through a lease (owner and expiry time); a worker that dies stops
renewing it, and once it expires the job can be leased again and resumes at its first
step that is not done. Jobs are leased oldest first, but a job waits while an older job
of the same pipeline is queued or running (deliveries of one pipeline never overtake
each other), and while a pipeline of the same commit that it reads as a pfs input is
queued or running. Jobs of one commit are inserted in dependency order, so a job only
ever waits for older ones and the oldest live job can always run.
"""

from __future__ import annotations

import time

from pachhook.queue.states import PENDING, QUEUED, RUNNING, STEP_RUNNING

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    from typing import Callable, Optional

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

    def ready(self) -> bool:
        """Whether `take` would find a job now."""
        row = self.database.connection.execute("SELECT 1 " + LEASABLE + " LIMIT 1", {"now": time.time()}).fetchone()
        return row is not None

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
