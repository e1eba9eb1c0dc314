"""Parsed pipeline templates by blob, so the post-commit hook parses an unchanged template once.

Stored with marshal, which is built in: json would cost an import on every commit.
"""

from __future__ import annotations

import marshal

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import: annotations only
    from typing import Any, Dict, Sequence

    from pachhook.queue.database import Database


class TemplateCache:
    def __init__(self, database: Database) -> None:
        self.database = database

    def get(self, keys: Sequence[str]) -> Dict[str, Any]:
        """Cached template parse results by key (missing ones left out)."""
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = self.database.connection.execute(
            f"SELECT blob, data FROM template_cache WHERE blob IN ({marks})", list(keys)
        )
        found = {}
        for key, data in rows:
            try:
                found[key] = marshal.loads(data)
            except (EOFError, ValueError, TypeError):
                continue  # written by another Python version: parse again
        return found

    def put(self, entries: Dict[str, Any]) -> None:
        if not entries:
            return
        with self.database.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO template_cache (blob, data) VALUES (?, ?)",
                [(key, marshal.dumps(data)) for key, data in entries.items()],
            )
