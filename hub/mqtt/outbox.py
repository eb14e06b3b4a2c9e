"""The command outbox: every command the hub sends is recorded before it is published.

A command is written in the same transaction as the job change that caused it
and published after the commit. Until the agent acknowledges it (or the hub
gives up on it) it is *pending*, and pending commands are published again on
every (re)connect with the same ``command_id`` and the same bytes, which the
agent acts on once.

Whoever wants to hear about commands going out (the live feed) registers with
``observe``; nothing wraps ``send``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from sqlite_utils import Database

from protocol import codec, topics
from protocol.messages import Command
from protocol.mqtt import NotConnected

from hub.store import Store, utcnow

log = structlog.get_logger("farmhand.hub.commands")


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None: ...


@dataclass(frozen=True)
class Outgoing:
    command_id: str
    node: str
    payload: bytes
    body: Command  # what ``payload`` encodes, so nobody decodes it again


class CommandOutbox:
    def __init__(self, store: Store, sender: str, publisher: Publisher) -> None:
        """``publisher`` raises ``NotConnected`` while the hub has no broker session."""
        self.store = store
        self.sender = sender
        self.publisher = publisher
        self.sent = 0
        self.unsent = 0
        self._observers: list[Callable[[Outgoing], None]] = []

    def observe(self, observer: Callable[[Outgoing], None]) -> None:
        """``observer`` hears every command handed to ``send``, published now or not."""
        self._observers.append(observer)

    def record(self, db: Database, node: str, body: Command, job_id: int | None) -> Outgoing:
        """Inside the caller's transaction; a command id recorded before keeps its first payload."""
        payload = codec.encode(codec.make(self.sender, body))
        db.execute(
            "INSERT OR IGNORE INTO commands (command_id, type, job_id, node, device, payload, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (body.command_id, body.type, job_id, node, body.device, payload.decode(), utcnow()),
        )
        row = db.execute("SELECT node, payload FROM commands WHERE command_id = ?", (body.command_id,)).fetchone()
        if row[1].encode() == payload:
            return Outgoing(body.command_id, row[0], payload, body)
        return _outgoing(body.command_id, row[0], row[1])

    def send(self, out: Outgoing) -> bool:
        """Publish (QoS 1) after the commit; a command not sent now goes out on the next connect."""
        try:
            self.publisher.publish(topics.node_command(out.node), out.payload, qos=1)
        except NotConnected:
            self.unsent += 1
            log.info("command_deferred", command_id=out.command_id, node=out.node)
            sent = False
        else:
            self.sent += 1
            log.info("command_sent", command_id=out.command_id, node=out.node)
            sent = True
        for observer in self._observers:
            try:
                observer(out)
            except Exception:
                log.warning("command_observer_failed", command_id=out.command_id, exc_info=True)
        return sent

    def get(self, command_id: str) -> dict[str, Any] | None:
        return self.store.one("SELECT * FROM commands WHERE command_id = ?", (command_id,))

    def acknowledge(self, db: Database, command_id: str, status: str, reason: str) -> None:
        db.execute(
            "UPDATE commands SET ack_status = ?, ack_reason = ?, acked_at = ? WHERE command_id = ?",
            (status, reason or None, utcnow(), command_id),
        )

    def supersede(self, db: Database, command_id: str) -> None:
        """Stop re-sending a command the hub no longer wants carried out as sent."""
        db.execute("UPDATE commands SET superseded_at = ? WHERE command_id = ? AND superseded_at IS NULL",
                   (utcnow(), command_id))

    def supersede_job(self, db: Database, job_id: int) -> None:
        """A finished job needs none of its unanswered commands any more."""
        db.execute(
            "UPDATE commands SET superseded_at = ? WHERE job_id = ? AND ack_status IS NULL AND superseded_at IS NULL",
            (utcnow(), job_id),
        )

    def pending(self) -> list[Outgoing]:
        rows = self.store.db.execute(
            "SELECT command_id, node, payload FROM commands"
            " WHERE ack_status IS NULL AND superseded_at IS NULL ORDER BY rowid"
        ).fetchall()
        return [_outgoing(cid, node, payload) for cid, node, payload in rows]

    def resend_pending(self) -> int:
        return sum(self.send(out) for out in self.pending())

    def counters(self) -> dict[str, int]:
        return {"sent": self.sent, "deferred": self.unsent}


def _outgoing(command_id: str, node: str, stored: str) -> Outgoing:
    """A command read back from the table (written by this hub, so it decodes)."""
    return Outgoing(command_id, node, stored.encode(), codec.decode(stored).body)  # type: ignore[arg-type]
