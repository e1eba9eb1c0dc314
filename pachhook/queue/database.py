"""The queue's SQLite file: connection, schema, corruption recovery and transactions.

`<git common dir>/pachhook/queue.db`, shared by all worktrees. Every state change is one
`BEGIN IMMEDIATE` transaction, so committers and workers in several processes never see
half a change. On the post-commit path: SQLite's C module and the standard library's small modules.
"""

from __future__ import annotations

import os
import sys
import time

# The standard `sqlite3` package is a thin layer over this C module; what it adds is datetime
# adapters (the queue keeps times as floats), and importing `datetime` for them costs the
# post-commit hook ~5 ms. The queue's other modules take these names from here.
try:
    import _sqlite3 as sqlite3
except ImportError:  # an interpreter whose sqlite3 is not built this way
    import sqlite3  # type: ignore[no-redef]

from pachhook.core.gitrepo import STATE_FOLDER

Error = sqlite3.Error
DatabaseError = sqlite3.DatabaseError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    from pathlib import Path
    from typing import Any, Optional

SCHEMA_VERSION = 3  # 2: job_ledger; 3: jobs.environment and jobs.reason (an older queue gains them on first open)
FOLDER = STATE_FOLDER
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
    lease_expires REAL,
    environment TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT ''
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
CREATE TABLE IF NOT EXISTS job_ledger (
    id INTEGER PRIMARY KEY,
    commit_sha TEXT NOT NULL,
    branch TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    template TEXT NOT NULL,
    image TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    steps TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_ledger_commit ON job_ledger(commit_sha);
CREATE INDEX IF NOT EXISTS job_ledger_pipeline ON job_ledger(pipeline, id);
CREATE TABLE IF NOT EXISTS problems (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    commit_sha TEXT NOT NULL,
    message TEXT NOT NULL
);
"""


def queue_path(git_common_dir: Any) -> Path:
    from pathlib import Path

    return Path(git_common_dir) / FOLDER / DB_NAME


class Transaction:
    """`with database.transaction() as db:`: BEGIN IMMEDIATE, then COMMIT, or ROLLBACK on error."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sqlite3.Connection:
        self.connection.execute("BEGIN IMMEDIATE")
        return self.connection

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self.connection.execute("COMMIT" if kind is None else "ROLLBACK")


class QueueFileError(sqlite3.DatabaseError):
    """The queue file is not one this pachhook may open (a folder, a newer schema); one line.

    A DatabaseError, so every caller that reports a queue it cannot open reports this too;
    never "corrupt", so it is never moved aside or rewritten.
    """


class Database:
    """One open queue database in `folder` (made if missing)."""

    def __init__(self, folder: str, timeout: float = 30.0) -> None:
        self.folder_str = folder
        os.makedirs(folder, exist_ok=True)
        self.set_aside: Optional[str] = None  # where a corrupt database was moved by this open
        self._timeout = timeout
        self._setup_lock = _SetupLock(folder)
        path = os.path.join(folder, DB_NAME)
        if os.path.isdir(path):
            raise QueueFileError(
                f"{path} is a folder, not pachhook's queue database: move it away and pachhook starts an empty queue"
            )
        try:
            self._open()
        except sqlite3.DatabaseError as error:
            if not is_corrupt(error):
                raise
            self.connection.close()
            self._recover(error)

    def _open(self) -> None:
        # isolation_level=None: transactions are begun explicitly, IMMEDIATE, so two
        # writers queue on the busy timeout instead of failing on a lock upgrade.
        self.connection = sqlite3.connect(
            os.path.join(self.folder_str, DB_NAME), timeout=self._timeout, isolation_level=None
        )
        self.connection.row_factory = sqlite3.Row
        self.connection.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        version = self.connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            # Written by a newer pachhook: "upgrading" it to this version would lose what it keeps.
            self.connection.close()
            raise QueueFileError(
                f"{os.path.join(self.folder_str, DB_NAME)} was written by a newer pachhook (queue schema"
                f" version {version}; this pachhook reads version {SCHEMA_VERSION}): upgrade pachhook, or"
                " move the file away to start an empty queue"
            )
        if version != SCHEMA_VERSION:
            # Two hooks meeting a new queue (the first commits of two worktrees) would both
            # switch it to WAL, and SQLite answers the loser "database is locked" at once,
            # busy timeout or not: one process sets the file up while the others wait.
            with self._setup_lock:
                self._create()
        self.connection.execute("PRAGMA synchronous = NORMAL")

    def _create(self) -> None:
        # a no-op for a file already in WAL mode (set up by the process that held the lock)
        self.connection.execute("PRAGMA journal_mode = WAL")
        with self.transaction():
            if self.connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                return
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.connection.execute(statement)
            _migrate(self.connection)
            self.connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def transaction(self) -> Transaction:
        return Transaction(self.connection)

    def close(self) -> None:
        self.connection.close()

    def recover_if_corrupt(self, error: Exception) -> bool:
        """After `error` from a query: if it says the file is damaged, move it aside and open
        a fresh queue (True); any other error is left to the caller (False)."""
        if not is_corrupt(error):
            return False
        self.connection.close()
        self._recover(error)
        return True

    def _recover(self, error: Exception) -> None:
        """Move a corrupt database aside (never delete it) and start a fresh one.

        Under the folder's lock, and only if it is still corrupt: a second process that met
        the same corruption must not move aside the fresh queue the first one just started.
        """
        with self._setup_lock:
            try:
                self._open()
                # quick_check reads every page (damage past the header shows only when read);
                # it runs on this rare path only
                if self.connection.execute("PRAGMA quick_check").fetchone()[0] == "ok":
                    return  # another process has already started a fresh queue
                raise sqlite3.DatabaseError("database disk image is malformed")
            except sqlite3.DatabaseError as again:
                if not is_corrupt(again):
                    raise
                self.connection.close()
            path = os.path.join(self.folder_str, DB_NAME)
            aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            os.rename(path, aside)
            for suffix in ("-wal", "-shm"):  # the journal belongs to the old file
                if os.path.exists(path + suffix):
                    os.rename(path + suffix, aside + suffix)
            self._open()
        self.set_aside = aside
        message = (
            f"the queue database was unreadable ({error}): moved it to {aside} and started"
            " a fresh queue; jobs recorded in the old one are not in the new one"
        )
        from pachhook.queue.joblog import Problems  # this rare path only: the hook stays light

        Problems(self).record(message)
        # Said here, once, by whichever command met it: the hook, status, a worker's log.
        print(f"pachhook: {message}", file=sys.stderr, flush=True)


class _SetupLock:
    """An exclusive flock on the queue folder's lock file while the database file is set up
    (created, migrated, recovered), which SQLite's own locks do not serialise.

    Re-entrant within its Database: recovery opens the fresh file, which creates it.
    """

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, DB_NAME + ".setup.lock")
        self.depth = 0
        self.fd = -1

    def __enter__(self) -> None:
        if self.depth == 0:
            import fcntl

            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        self.depth += 1

    def __exit__(self, *exc: Any) -> None:
        self.depth -= 1
        if self.depth == 0:
            os.close(self.fd)  # closing the descriptor releases the lock


# Columns later schema versions added to `jobs`; a file of an older version gets them
# (CREATE TABLE IF NOT EXISTS leaves an existing table as it was).
_ADDED_COLUMNS = (
    ("environment", "TEXT NOT NULL DEFAULT ''"),  # v2: the environment a job delivers to
    ("reason", "TEXT NOT NULL DEFAULT ''"),  # v2: why a job ended as it did (superseded by, forced...)
)


def _migrate(connection: sqlite3.Connection) -> None:
    present = {row[1] for row in connection.execute("PRAGMA table_info(jobs)")}
    for name, definition in _ADDED_COLUMNS:
        if name not in present:
            connection.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")


def is_corrupt(error: Exception) -> bool:
    """Whether an error opening the database means its file is damaged (not locked, not
    unwritable: those must not move a good queue aside)."""
    text = str(error).lower()
    return "file is not a database" in text or "malformed" in text
