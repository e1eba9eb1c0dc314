"""Deliveries that need the user: failed, or stuck, and not yet shown to them.

The post-commit and pre-push hooks print one line for each (with the command that says
more) once; `pachhook status` shows them too. What was shown is remembered as the highest
job id told about, in `<git common dir>/pachhook/attention-seen`: a later failure of the
same pipeline is a new job, so it is told again.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    from typing import Any, Dict, List

    from pachhook.queue.jobs import Job

SEEN_NAME = "attention-seen"
RECENT = 500  # jobs looked at, newest first: older ones have newer jobs of their pipeline
# A running job whose lease ended this long ago has no worker left: its worker died.
STUCK_GRACE = 30.0


def newest_per_pipeline(jobs: List[Job]) -> List[Job]:
    """The newest job of each pipeline (jobs given newest first), superseded and cancelled ones aside."""
    newest: dict = {}
    for job in jobs:
        if job.state in ("superseded", "cancelled"):
            continue
        newest.setdefault(job.pipeline, job)
    return list(newest.values())


def failed_newest(queue: Any) -> Dict[str, int]:
    """pipeline -> id of its newest job when that job failed; one query, no job records built.

    The post-commit hook calls this on every commit: records (dataclasses, JSON) are only
    built when there is something to tell.
    """
    rows = queue._db.execute(
        "SELECT pipeline, id FROM jobs AS j WHERE state = 'failed' AND id = (SELECT max(id) FROM jobs"
        " WHERE pipeline = j.pipeline AND state NOT IN ('superseded', 'cancelled'))"
    ).fetchall()
    return {str(pipeline): int(job_id) for pipeline, job_id in rows}


def any_unseen(queue: Any) -> bool:
    """Whether a failed newest job or a stuck one was not shown yet (cheap: for the hooks)."""
    seen = last_seen(queue.folder_str)
    if any(job_id > seen for job_id in failed_newest(queue).values()):
        return True
    row = queue._db.execute(
        "SELECT 1 FROM jobs WHERE state = 'running' AND id > ? AND lease_expires < ? LIMIT 1",
        (seen, time.time() - STUCK_GRACE),
    ).fetchone()
    return row is not None


def needing_attention(queue: Any, unseen_only: bool = True) -> List[Job]:
    """Failed or stuck newest jobs, oldest first; with unseen_only, those not shown yet."""
    jobs = newest_per_pipeline(queue.list_jobs(limit=RECENT))
    expiry = queue.leases.next_expiry()
    stuck_possible = expiry is not None and expiry < time.time() - STUCK_GRACE
    found = [job for job in jobs if job.state == "failed" or (stuck_possible and job.state == "running")]
    if unseen_only:
        seen = last_seen(queue.folder_str)
        found = [job for job in found if job.id > seen]
    return sorted(found, key=lambda job: job.id)


def describe(job: Job) -> str:
    """One line: which delivery, what went wrong, the command to see more."""
    where = f"{job.pipeline} at {job.commit[:12]}" + (f" ({job.branch})" if job.branch else "")
    if job.state == "failed":
        failed = [step for step in job.steps if step.error]
        cause = f"{failed[0].name} failed: {_one_line(failed[0].error)}" if failed else "failed"
        return f"delivery of {where} {cause}; `pachhook logs {job.id}`, then `pachhook retry {job.id}`"
    return (
        f"delivery of {where} is stuck: its worker stopped without finishing (job {job.id});"
        " `pachhook run` takes it up again"
    )


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def last_seen(folder: str) -> int:
    try:
        with open(os.path.join(folder, SEEN_NAME), encoding="ascii") as handle:
            return int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def mark_seen(folder: str, jobs: List[Job]) -> None:
    """Remember that `jobs` were shown (best effort: telling twice beats failing a hook)."""
    if not jobs:
        return
    highest = max(max(job.id for job in jobs), last_seen(folder))
    temporary = os.path.join(folder, f"{SEEN_NAME}.{os.getpid()}")
    try:
        with open(temporary, "w", encoding="ascii") as handle:
            handle.write(f"{highest}\n")
        os.replace(temporary, os.path.join(folder, SEEN_NAME))
    except OSError:
        pass


def tell_unseen(git_common_dir: str, say: Any) -> int:
    """Print (through `say`) a line for each delivery needing attention not shown yet; how many.

    Opens the queue only when one exists: a push from a clone that never queued anything
    creates nothing.
    """
    from pachhook.queue.store import DB_NAME, FOLDER, Queue

    if not os.path.isfile(os.path.join(git_common_dir, FOLDER, DB_NAME)):
        return 0
    queue = Queue(git_common_dir, timeout=5.0)
    try:
        if not any_unseen(queue):
            return 0
        jobs = needing_attention(queue)
        for job in jobs:
            say(describe(job))
        mark_seen(queue.folder_str, jobs)
        return len(jobs)
    finally:
        queue.close()
