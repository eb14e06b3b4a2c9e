"""End-to-end confirmation of node events: the hub tells each node which of its events are stored.

An agent deletes an event from its outbox only on this confirmation, never on
the broker's PUBACK (a broker acknowledges a message and may still drop it
from the hub's overflowing queue). Per node the hub keeps a high-water mark
of ``seq``: every event of the node up to it is stored, or was given up by the
node itself. An event ``s`` carrying ``prev_seq`` ``p`` (the greatest seq below
``s`` the node still held when it sent ``s``) lifts the mark to ``s`` once ``s``
is stored and ``p <= mark``: nothing between is still held by the node.
Events stored above a gap (a message the broker dropped) wait in ``_ahead``
until the node's replay fills the gap. An agent too old to send ``prev_seq``
deletes on PUBACK anyway; its mark simply follows its highest stored seq.

Marks are saved in the transaction that stores the events (``save``), and
published after the commit at most every ``interval_s`` per node (``flush``),
QoS 1 on the node's own ack topic; a duplicate (a replay) makes its node's
mark due again, so a lost confirmation is repaired by the node's replay.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from sqlite_utils import Database

from protocol import codec, topics
from protocol.messages import EventAck
from protocol.mqtt import NotConnected

from hub.store import utcnow

from .link import MqttLink

log = structlog.get_logger("farmhand.hub.confirm")

AHEAD_MAX = 50_000
"""Events remembered above a node's gap; past this the newest are forgotten (the node sends them again)."""


class EventConfirmations:
    def __init__(self, hub_id: str, link: MqttLink, interval_s: float = 0.2) -> None:
        self.hub_id = hub_id
        self.link = link
        self.interval_s = interval_s
        self._timer: asyncio.TimerHandle | None = None
        self.marks: dict[str, int] = {}
        self._ahead: dict[str, dict[int, int]] = {}  # node -> {seq stored above the mark: its prev_seq}
        self._unsaved: set[str] = set()
        self._due: dict[str, float] = {}  # node -> when its mark first became due to be published
        self.lag_s: dict[str, float] = {}  # node -> how long its last confirmation waited after the commit
        self.published = 0

    # ------------------------------------------------------------------ inside the batch's transaction

    def stored(self, db: Database, node: str, seq: int, prev: int | None) -> None:
        """A node's event ``seq`` is stored (now, or it was already: a replay)."""
        mark = self._mark(db, node)
        if prev is None:
            mark = max(mark, seq)
        elif seq > mark:
            if prev <= mark and node not in self._ahead:
                mark = seq  # the usual case: the next event in order
            else:
                ahead = self._ahead.setdefault(node, {})
                if len(ahead) < AHEAD_MAX:
                    ahead[seq] = prev
                mark = self._advance(node, mark)
        if mark != self.marks[node]:
            self.marks[node] = mark
            self._unsaved.add(node)
        if node not in self._due:  # not setdefault: it would read the clock for every event
            self._due[node] = time.monotonic()

    def _advance(self, node: str, mark: int) -> int:
        ahead = self._ahead[node]
        moved = True
        while moved:
            moved = False
            for seq in sorted(ahead):
                if seq <= mark:
                    del ahead[seq]
                elif ahead[seq] <= mark:
                    mark, moved = seq, True
        if not ahead:
            del self._ahead[node]
        return mark

    def _mark(self, db: Database, node: str) -> int:
        if node not in self.marks:
            row = db.execute("SELECT seq FROM event_marks WHERE node = ?", (node,)).fetchone()
            self.marks[node] = row[0] if row else 0
        return self.marks[node]

    def save(self, db: Database) -> None:
        """Persist the marks that moved, in the transaction that stored their events."""
        if not self._unsaved:
            return
        now = utcnow()
        db.conn.executemany(
            "INSERT INTO event_marks (node, seq, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (node) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
            [(node, self.marks[node], now) for node in self._unsaved],
        )
        self._unsaved.clear()

    # ------------------------------------------------------------------ after the commit

    def flush_soon(self) -> None:
        """Publish the due marks within ``interval_s``: one confirmation per node covers many events."""
        if self._due and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._flush_timer)

    def _flush_timer(self) -> None:
        self._timer = None
        self.flush()
        self.flush_soon()  # what the broker's absence kept back

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def flush(self) -> int:
        """Publish every due mark; returns how many went out."""
        if not self._due or not self.link.connected:
            return 0
        due, self._due = self._due, {}
        now = time.monotonic()
        sent = 0
        for node, since in due.items():
            payload = codec.encode(codec.make(self.hub_id, EventAck(seq=self.marks[node])))
            try:
                self.link.publish(topics.node_ack(node), payload, qos=1)
            except NotConnected:
                self._due.setdefault(node, since)
                continue
            self.lag_s[node] = now - since
            sent += 1
        self.published += sent
        return sent

    def unconfirmed(self) -> dict[str, int]:
        """Events stored above each node's mark, waiting for a gap to fill."""
        return {node: len(ahead) for node, ahead in self._ahead.items()}
