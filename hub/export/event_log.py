"""Reading the outbound event log and keeping each exporter's cursor (its high-water mark) beside it.

The log is written only by the triggers of ``migration.py``; this module reads it, remembers how far each
exporter got, and prunes events every exporter has passed once they are older than the keep time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from hub.store import Store, timestamp, utcnow


def type_matches(patterns: list[str], event_type: str) -> bool:
    """Empty: everything; 'job.*' matches every job event."""
    return not patterns or any(fnmatchcase(event_type, p) for p in patterns)


class EventLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    def last_id(self) -> int:
        row = self.store.db.execute("SELECT MAX(id) FROM outbound_events").fetchone()
        return row[0] or 0

    def after(self, after: int, limit: int, types: list[str] | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` events with id > ``after``, oldest first (filtered by type pattern when given)."""
        if not types:
            return self.store.all("SELECT * FROM outbound_events WHERE id > ? ORDER BY id LIMIT ?", (after, limit))
        out: list[dict[str, Any]] = []
        while len(out) < limit:
            rows = self.store.all("SELECT * FROM outbound_events WHERE id > ? ORDER BY id LIMIT ?", (after, limit))
            if not rows:
                break
            out += [r for r in rows if type_matches(types, r["type"])]
            after = rows[-1]["id"]
        return out[:limit]

    def get(self, event_id: int) -> dict[str, Any] | None:
        return self.store.one("SELECT * FROM outbound_events WHERE id = ?", (event_id,))

    # ------------------------------------------------------------------ cursors

    def cursor(self, name: str, start: int | None = None) -> int:
        """The last id ``name`` exported; a new cursor starts at ``start`` (default: the log's end)."""
        row = self.store.one("SELECT last_id FROM export_cursors WHERE name = ?", (name,))
        if row is not None:
            return int(row["last_id"])
        first = self.last_id() if start is None else start
        self.save_cursor(name, first)
        return first

    def save_cursor(self, name: str, last_id: int) -> None:
        self.store.db.execute(
            "INSERT INTO export_cursors (name, last_id, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET last_id = excluded.last_id, updated_at = excluded.updated_at",
            (name, last_id, utcnow()))

    # ------------------------------------------------------------------ retention

    def prune(self, keep_days: float, now: datetime | None = None) -> int:
        """Delete events older than ``keep_days`` that every cursor and live webhook has passed."""
        before = timestamp((now or datetime.now(UTC)) - timedelta(days=keep_days))
        floor = self.store.db.execute(
            "SELECT MIN(last_id) FROM (SELECT last_id FROM export_cursors"
            " UNION ALL SELECT last_id FROM webhooks WHERE deleted_at IS NULL)").fetchone()[0]
        bound = self.last_id() if floor is None else floor
        with self.store.transaction() as db:
            return db.execute("DELETE FROM outbound_events WHERE id <= ? AND time < ?", (bound, before)).rowcount
