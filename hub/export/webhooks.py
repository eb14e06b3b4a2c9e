"""Webhook subscriptions: who gets which events, how far each got, and what could not be delivered.

A subscription's ``last_id`` is its cursor: every event up to it was delivered or dead-lettered. Replay
moves the cursor back; the deliverer (``delivery.py``) then sends those events again, in order.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

from hub.api import ApiProblem
from hub.store import Store, utcnow

from .event_log import EventLog
from .schemas import DeadLetter, Webhook, WebhookCreate


class Webhooks:
    def __init__(self, store: Store, events: EventLog, on_change: Callable[[int], None]) -> None:
        self.store = store
        self.events = events
        self.on_change = on_change  # the deliverer restarts that webhook's worker from its cursor

    def active(self) -> list[dict[str, Any]]:
        rows = self.store.all("SELECT * FROM webhooks WHERE deleted_at IS NULL ORDER BY id")
        return [{**r, "event_types": json.loads(r["event_types"])} for r in rows]

    def _row(self, webhook_id: int) -> dict[str, Any]:
        row = self.store.one("SELECT * FROM webhooks WHERE id = ? AND deleted_at IS NULL", (webhook_id,))
        if row is None:
            raise ApiProblem(404, "Webhook not found", f"no webhook {webhook_id}")
        return row

    def _view(self, row: dict[str, Any], secret: str | None = None) -> Webhook:
        dead = self.store.db.execute("SELECT COUNT(*) FROM webhook_dead_letters WHERE webhook_id = ?",
                                     (row["id"],)).fetchone()[0]
        return Webhook(id=row["id"], url=row["url"], event_types=json.loads(row["event_types"]),
                       last_id=row["last_id"], created_at=row["created_at"], dead_letters=dead, secret=secret)

    def create(self, spec: WebhookCreate) -> Webhook:
        secret = spec.secret or secrets.token_urlsafe(32)
        start = self.events.last_id() if spec.from_id is None else spec.from_id
        webhook_id = self.store.db.execute(
            "INSERT INTO webhooks (url, secret, event_types, last_id, created_at) VALUES (?, ?, ?, ?, ?)",
            (str(spec.url), secret, json.dumps(spec.event_types), start, utcnow())).lastrowid
        self.on_change(webhook_id)
        return self._view(self._row(webhook_id), secret=None if spec.secret else secret)

    def get(self, webhook_id: int) -> Webhook:
        return self._view(self._row(webhook_id))

    def list(self) -> list[Webhook]:
        return [self._view(r) for r in self.store.all("SELECT * FROM webhooks WHERE deleted_at IS NULL ORDER BY id")]

    def delete(self, webhook_id: int) -> None:
        self._row(webhook_id)
        self.store.db.execute("UPDATE webhooks SET deleted_at = ? WHERE id = ?", (utcnow(), webhook_id))
        self.on_change(webhook_id)

    def replay(self, webhook_id: int, from_id: int) -> Webhook:
        """Deliver every subscribed event with id >= ``from_id`` again, dead letters among them."""
        self._row(webhook_id)
        self.store.db.execute("UPDATE webhooks SET last_id = ? WHERE id = ?", (from_id - 1, webhook_id))
        self.on_change(webhook_id)
        return self.get(webhook_id)

    # ------------------------------------------------------------------ the deliverer's bookkeeping

    def advance(self, webhook_id: int, last_id: int) -> None:
        self.store.db.execute("UPDATE webhooks SET last_id = ? WHERE id = ? AND last_id < ?",
                              (last_id, webhook_id, last_id))

    def delivered(self, webhook_id: int, event_id: int) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM webhook_dead_letters WHERE webhook_id = ? AND event_id = ?",
                       (webhook_id, event_id))
            self.advance(webhook_id, event_id)

    def dead(self, webhook_id: int, event_id: int, attempts: int, error: str) -> None:
        with self.store.transaction() as db:
            db.execute("INSERT INTO webhook_dead_letters (webhook_id, event_id, attempts, error, failed_at)"
                       " VALUES (?, ?, ?, ?, ?) ON CONFLICT(webhook_id, event_id) DO UPDATE SET"
                       " attempts = excluded.attempts, error = excluded.error, failed_at = excluded.failed_at",
                       (webhook_id, event_id, attempts, error, utcnow()))
            self.advance(webhook_id, event_id)

    def dead_ids(self, webhook_id: int, after: int) -> set[int]:
        """Dead letters a replay is about to deliver again (their rows go when they get through)."""
        rows = self.store.db.execute("SELECT event_id FROM webhook_dead_letters WHERE webhook_id = ? AND event_id > ?",
                                     (webhook_id, after)).fetchall()
        return {r[0] for r in rows}

    def dead_letters(self, webhook_id: int) -> list[DeadLetter]:
        self._row(webhook_id)
        rows = self.store.all(
            "SELECT d.*, e.type FROM webhook_dead_letters d LEFT JOIN outbound_events e ON e.id = d.event_id"
            " WHERE d.webhook_id = ? ORDER BY d.event_id", (webhook_id,))
        return [DeadLetter(**r) for r in rows]

    def dead_letter_count(self) -> int:
        return self.store.db.execute("SELECT COUNT(*) FROM webhook_dead_letters").fetchone()[0]
