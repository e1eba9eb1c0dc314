"""A job's log lines and the problems `pachhook queue` met, in the queue database."""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    import sqlite3
    from typing import Any, Dict, Iterator, List

    from pachhook.queue.database import Database


class RecordedProblem:
    """A problem `pachhook queue` recorded for a commit (bad configuration, a template it skipped)."""

    __slots__ = ("at", "commit", "message")

    def __init__(self, at: float, commit: str, message: str) -> None:
        self.at, self.commit, self.message = at, commit, message

    def as_dict(self) -> Dict[str, Any]:
        return {"at": self.at, "commit": self.commit, "message": self.message}


class JobLogs:
    """What the steps of each job said, line by line."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def append(self, job_id: int, line: str) -> None:
        with self.database.transaction() as db:
            db.execute("INSERT INTO logs (job_id, at, line) VALUES (?, ?, ?)", (job_id, time.time(), line.rstrip("\n")))

    def lines(self, job_id: int) -> List[str]:
        query = "SELECT line FROM logs WHERE job_id = ? ORDER BY id"
        return [r[0] for r in self.database.connection.execute(query, (job_id,))]

    def entries(self, job_id: int, after: int = 0) -> Iterator[sqlite3.Row]:
        """(id, at, line) of the job's lines, oldest first; with `after`, only those written
        after the line of that id (`pachhook logs --follow` asks again from the last it showed)."""
        query = "SELECT id, at, line FROM logs WHERE job_id = ? AND id > ? ORDER BY id"
        return iter(self.database.connection.execute(query, (job_id, after)).fetchall())


class Problems:
    """Problems met while queueing (bad configuration, skipped templates, a set-aside queue)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def record(self, message: str, commit: str = "") -> None:
        with self.database.transaction() as db:
            db.execute(
                "INSERT INTO problems (at, commit_sha, message) VALUES (?, ?, ?)", (time.time(), commit, message)
            )

    def recent(self, since: float = 0.0, limit: int = 5) -> List[RecordedProblem]:
        rows = self.database.connection.execute(
            "SELECT at, commit_sha, message FROM problems WHERE at >= ? ORDER BY id DESC LIMIT ?",
            (since, limit),
        )
        return [RecordedProblem(r[0], r[1], r[2]) for r in rows]
