"""Bounded history: finished jobs past the retention move into a compact provenance ledger.

The queue keeps, per pipeline, the newest `keep` jobs (the configuration's `keep_jobs`),
every job that is not finished, the newest delivered job (the live pipeline version) and
the job that delivered a held version (after a rollback). Older finished jobs leave the
`jobs`, `steps`, `job_needs` and `logs` tables; those that built, pushed or updated
anything keep one `job_ledger` row (the job's fields and its steps' results as JSON),
which `pachhook provenance` reads with the live jobs. The rest (superseded before they
started, failed before any result) go.

Pruning runs in the worker after a drain, never on the hook path: the hooks' queries then
look at a history of about `keep` jobs per pipeline, whatever the repository's age.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Dict, List, Mapping, Sequence

from pachhook.queue.database import Database
from pachhook.queue.jobs import Job, StepRecord
from pachhook.queue.states import CANCELLED, DONE, FAILED, SUPERSEDED

FINISHED = (DONE, FAILED, CANCELLED, SUPERSEDED)
# Jobs moved per transaction: each is short, so a commit's hook never waits long on it.
BATCH = 500


def prune(database: Database, keep: int, held_versions: Mapping[str, str] = {}) -> int:
    """Move finished jobs past the retention into the ledger; the number of jobs moved.

    `held_versions` maps a held pipeline to the version it is held at: the job that
    delivered that version stays.
    """
    keep = max(int(keep), 1)
    db = database.connection
    victims: List[int] = []
    for (pipeline,) in db.execute("SELECT DISTINCT pipeline FROM jobs").fetchall():
        rows = db.execute(
            "SELECT id, state FROM jobs WHERE pipeline = ? ORDER BY id DESC LIMIT -1 OFFSET ?", (pipeline, keep)
        ).fetchall()
        if not rows:
            continue
        newest_done = db.execute(
            "SELECT max(id) FROM jobs WHERE pipeline = ? AND state = ?", (pipeline, DONE)
        ).fetchone()[0]
        held = held_versions.get(pipeline)
        for job_id, state in rows:
            if state not in FINISHED or job_id == newest_done:
                continue
            if held and _delivered_version(db, job_id) == held:
                continue
            victims.append(job_id)
    for start in range(0, len(victims), BATCH):
        _move(database, victims[start : start + BATCH])
    return len(victims)


def _delivered_version(db: sqlite3.Connection, job_id: int) -> str:
    row = db.execute("SELECT result FROM steps WHERE job_id = ? AND name = 'update'", (job_id,)).fetchone()
    if row is None:
        return ""
    try:
        return str(json.loads(row[0]).get("pipeline_version", ""))
    except (ValueError, AttributeError):
        return ""


def _move(database: Database, ids: Sequence[int]) -> None:
    marks = ",".join("?" * len(ids))
    with database.transaction() as db:
        steps: Dict[int, List[list]] = {job_id: [] for job_id in ids}
        for row in db.execute(
            f"SELECT job_id, name, state, finished_at, result FROM steps WHERE job_id IN ({marks})"
            " ORDER BY job_id, position",
            list(ids),
        ):
            result = json.loads(row[4] or "{}")
            if result:
                steps[row[0]].append([row[1], row[2], row[3], result])
        kept = [
            (*row, json.dumps(steps[row[0]], separators=(",", ":")))
            for row in db.execute(
                "SELECT id, commit_sha, branch, pipeline, template, image, state, created_at, updated_at"
                f" FROM jobs WHERE id IN ({marks})",
                list(ids),
            )
            if steps[row[0]]
        ]
        db.executemany(
            "INSERT OR REPLACE INTO job_ledger (id, commit_sha, branch, pipeline, template, image, state,"
            " created_at, updated_at, steps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            kept,
        )
        for table, column in (("steps", "job_id"), ("job_needs", "job_id"), ("logs", "job_id"), ("jobs", "id")):
            db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", list(ids))


def ledger_jobs(database: Database) -> List[Job]:
    """The jobs kept in the ledger, newest first, as Job records with their steps' results."""
    jobs = []
    for row in database.connection.execute(
        "SELECT id, commit_sha, branch, pipeline, template, image, state, created_at, updated_at, steps"
        " FROM job_ledger ORDER BY id DESC"
    ):
        steps = [
            StepRecord(name=name, state=state, finished_at=finished, result=dict(result))
            for name, state, finished, result in json.loads(row[9])
        ]
        jobs.append(
            Job(
                id=row[0],
                commit=row[1],
                branch=row[2],
                pipeline=row[3],
                template=row[4],
                image=row[5],
                state=row[6],
                created_at=row[7],
                updated_at=row[8],
                steps=steps,
            )
        )
    return jobs
