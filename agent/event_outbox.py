"""The event outbox: QoS 1 events survive broker outages and agent restarts.

``append`` writes one row (topic and the encoded envelope) to SQLite and
returns only after it is committed; the row's ``seq`` is the envelope's
``seq``. A fresh outbox file starts numbering at the current Unix time in
milliseconds, and AUTOINCREMENT never reuses a number, so a reinstalled
agent never repeats a ``(sender, seq)`` the hub has already seen. Numbers are
contiguous, so the hub can see a gap where the bound below dropped an event.

A row leaves the outbox only when the hub confirms it stored it (an
``event_ack`` on the node's ack topic carrying a high-water mark of ``seq``;
``confirm``), never on the broker's PUBACK: a broker acknowledges a message
and may still drop it from the hub's overflowing queue. The sender publishes
rows in ``seq`` order with at most ``window`` sent and unconfirmed (flow
control: a farm replaying its outboxes cannot bury the hub), each carrying
``prev_seq``, the greatest seq below it the outbox still holds, so the hub can
confirm past rows this outbox dropped. After a reconnect it replays every
unconfirmed row after a random pause of up to ``replay_jitter_s`` (a whole farm
coming back spreads out), and when nothing is confirmed for
``confirm_timeout_s`` it sends the window again (a message lost on the way), waiting twice as long
after each replay that brought no confirmation.
The hub de-duplicates on ``(sender, seq)``, so a replay is stored once.

Bound policy, when the outbox holds ``max_messages`` rows and one more comes:

1. drop the oldest *superseded* row: a ``job_progress`` or ``render_progress``
   event, which a later progress, completion or failure of the same job replaces;
2. only when nothing superseded is left, drop the oldest event of any kind,
   log an error with the counts, and count it in ``dropped_events``.

Dropping the oldest rather than refusing the newest keeps what the hub needs
most after a long outage: how each job ended and the answers to its latest
commands. The error log and the ``seq`` gap make the loss visible; nothing is
lost silently. The file is opened in exclusive locking mode so a second agent
process pointed at the same storage (which would reuse numbers) fails at once.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

from protocol import codec
from protocol.messages import MAX_PAYLOAD_BYTES, Event, EventAck
from protocol.mqtt import MqttSession, NotConnected

log = structlog.get_logger("farmhand.agent.event_outbox")

SUPERSEDED_TYPES = frozenset({"job_progress", "render_progress"})
# A clock before this is unset (a Pi without RTC before NTP): numbers from it could repeat.
_SANE_EPOCH_MS = 1_704_067_200_000  # 2024-01-01

# The table keeps its first name, "spool", so existing agent databases open unchanged.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    superseded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS spool_superseded ON spool(seq) WHERE superseded = 1;
"""


class OutboxLocked(RuntimeError):
    """Another agent process holds this outbox file."""


class EventOutbox:
    def __init__(
        self,
        path: Path,
        sender: str,
        *,
        max_messages: int = 100_000,
        window: int = 200,
        confirm_timeout_s: float = 30.0,
        replay_jitter_s: float = 2.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if max_messages < 1 or window < 1:
            raise ValueError("max_messages and window must be at least 1")
        self.path = path
        self.sender = sender
        self.max_messages = max_messages
        self.window = window
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = _open(path)
        self._next_seq = self._init_sequence()
        self._count: int = self.db.execute("SELECT count(*) FROM spool").fetchone()[0]
        self.confirm_timeout_s = confirm_timeout_s
        self.replay_jitter_s = replay_jitter_s
        self._rng = rng
        self.confirmed = 0  # the hub's high-water mark: every row up to it is stored at the hub
        self._confirmed_at = time.monotonic()
        self._sent: deque[int] = deque()  # seqs sent on this connection, not yet confirmed
        self._sent_at = 0.0  # when the oldest of them went out
        self._fruitless = 0  # replays since the last confirmation
        self._cursor = 0  # highest seq handed to the broker on this connection
        self._restart = False
        self._replay_at = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped_superseded = 0
        self.dropped_events = 0
        self.sent = 0  # rows the hub confirmed
        self.malformed_acks = 0
        self.replays = 0  # times nothing was confirmed for confirm_timeout_s and the window went out again

    def _init_sequence(self) -> int:
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'spool'").fetchone()
        if row is not None:
            return int(row[0]) + 1
        start = int(time.time() * 1000)
        if start < _SANE_EPOCH_MS:
            log.warning("spool_clock_unset", path=str(self.path), unix_ms=start)
        with self.transaction() as db:
            db.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('spool', ?)", (start - 1,))
        log.info("spool_created", path=str(self.path), first_seq=start)
        return start

    # ---------------------------------------------------------------- writing

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def append(
        self,
        topic: str,
        body: Event,
        *,
        before_commit: Callable[[sqlite3.Connection], None] | None = None,
    ) -> int:
        """Store one event; returns its seq once committed.

        ``before_commit(db)`` runs in the same transaction, so a caller's own
        bookkeeping (a command's stored ack) and the event persist together.
        """
        seq = self._next_seq
        payload = codec.encode(codec.make(self.sender, body, seq))
        if len(payload) > MAX_PAYLOAD_BYTES:
            # Refused here, not at the broker: stored, it would be resent (and refused) forever.
            raise codec.PayloadTooLarge(f"{body.type} of {len(payload)} bytes is over the limit of {MAX_PAYLOAD_BYTES}")
        with self.transaction() as db:
            dropped = self._make_room(db) if self._count >= self.max_messages else 0
            db.execute(
                "INSERT INTO spool(seq, topic, payload, superseded) VALUES (?, ?, ?, ?)",
                (seq, topic, payload, body.type in SUPERSEDED_TYPES),
            )
            if before_commit is not None:
                before_commit(db)
        self._next_seq = seq + 1
        self._count += 1 - dropped
        self._wake.set()
        return seq

    def _make_room(self, db: sqlite3.Connection) -> int:
        excess = self._count - self.max_messages + 1
        gone = db.execute(
            "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool WHERE superseded = 1 ORDER BY seq LIMIT ?)",
            (excess,),
        ).rowcount
        self.dropped_superseded += gone
        if gone < excess:
            lost = db.execute(
                "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool ORDER BY seq LIMIT ?)", (excess - gone,)
            ).rowcount
            self.dropped_events += lost
            gone += lost
            # Every drop is an error, but one line per thousand is enough to read.
            if self.dropped_events == lost or self.dropped_events % 1000 < lost:
                log.error("spool_full_dropping_events", path=str(self.path), max_messages=self.max_messages,
                          dropped_events=self.dropped_events, dropped_superseded=self.dropped_superseded)
        return gone

    # ---------------------------------------------------------------- reading

    def pending(self) -> int:
        """Rows the hub has not confirmed (sent or not)."""
        return self._count

    @property
    def in_flight(self) -> int:
        """Rows sent on this connection and not yet confirmed by the hub."""
        return len(self._sent)

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def rows(self) -> list[tuple[int, str, bytes]]:
        return self.db.execute("SELECT seq, topic, payload FROM spool ORDER BY seq").fetchall()

    # ---------------------------------------------------------------- the hub's confirmations

    def confirm_message(self, payload: bytes) -> None:
        """An ``event_ack`` as it arrived on the node's ack topic; anything else is counted and logged."""
        try:
            ack = codec.decode_as(payload, EventAck)
        except codec.ProtocolError as exc:
            self.malformed_acks += 1
            log.warning("event_ack_malformed", error=str(exc), malformed_total=self.malformed_acks)
            return
        self.confirm(ack.seq)

    def confirm(self, seq: int) -> int:
        """The hub stored every event up to ``seq``: they leave the outbox. Returns how many left."""
        if seq <= self.confirmed:
            return 0  # an old or repeated confirmation
        self.confirmed = seq
        self._confirmed_at = time.monotonic()
        self._fruitless = 0
        while self._sent and self._sent[0] <= seq:
            self._sent.popleft()
        self._cursor = max(self._cursor, seq)
        with self.transaction() as db:
            gone = db.execute("DELETE FROM spool WHERE seq <= ?", (seq,)).rowcount
        self._count -= gone
        self.sent += gone
        self._wake.set()
        return gone

    # ---------------------------------------------------------------- sending

    def wake(self) -> None:
        """Look for work now."""
        self._wake.set()

    def reconnected(self) -> None:
        """A new connection: replay every unconfirmed row, after a jittered pause so a farm spreads out."""
        # Only a node with a backlog waits: its new events would otherwise wait behind nothing.
        self._replay_at = time.monotonic() + (self._rng() * self.replay_jitter_s if self._count else 0.0)
        self._restart = True
        self._wake.set()

    def start_sender(self, session: MqttSession) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._send_loop(session), name=f"outbox:{self.sender}")

    async def stop_sender(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def drain(self, timeout: float) -> bool:
        """Wait until the hub confirmed every row (True) or ``timeout`` passes (False)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        return self._count == 0

    async def _send_loop(self, session: MqttSession) -> None:
        while True:
            try:
                async with asyncio.timeout(self._next_check()):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                if not session.connected:
                    continue  # the (re)connect wakes us
                now = time.monotonic()
                if self._restart and now < self._replay_at:
                    continue  # the jittered pause after a reconnect
                if self._sent and now - max(self._confirmed_at, self._sent_at) > self._timeout():
                    # Nothing confirmed for a while: a message was lost on the way (a broker queue that
                    # overflowed). Send again from the oldest unconfirmed row; the hub de-duplicates.
                    # Each further replay without progress waits twice as long: a hub that is merely
                    # slow must not be buried under copies.
                    self.replays += 1
                    self._fruitless += 1
                    log.info("outbox_replay", path=str(self.path), unconfirmed=len(self._sent),
                             confirmed=self.confirmed)
                    self._restart = True
                if self._restart:
                    self._restart = False
                    self._cursor = self.confirmed
                    self._sent.clear()
                self._send_some(session)
            except sqlite3.Error:
                # A sender that died would strand every later event; retry instead.
                log.exception("outbox_send_failed", path=str(self.path))
                await asyncio.sleep(1.0)
                self._wake.set()

    def _next_check(self) -> float:
        now = time.monotonic()
        if self._restart:
            return max(0.001, self._replay_at - now)
        if self._sent:
            return max(0.05, max(self._confirmed_at, self._sent_at) + self._timeout() - now)
        return 3600.0

    def _timeout(self) -> float:
        return min(self.confirm_timeout_s * 2 ** min(self._fruitless, 10), max(self.confirm_timeout_s, 300.0))

    def _send_some(self, session: MqttSession) -> None:
        room = self.window - len(self._sent)
        if room <= 0:
            return
        rows = self.db.execute(
            "SELECT seq, topic, payload FROM spool WHERE seq > ? ORDER BY seq LIMIT ?", (self._cursor, room)
        ).fetchall()
        if not rows:
            return
        below = self.db.execute("SELECT max(seq) FROM spool WHERE seq < ?", (rows[0][0],)).fetchone()[0]
        prev = below or 0
        for seq, topic, payload in rows:
            try:
                session.publish(topic, _with_prev(payload, prev), qos=1)
            except NotConnected:
                self._restart = True
                return
            if not self._sent:
                self._sent_at = time.monotonic()
            self._sent.append(seq)
            self._cursor = prev = seq

    def close(self) -> None:
        self.db.close()


def _with_prev(payload: bytes, prev: int) -> bytes:
    """The stored envelope with ``prev_seq`` added: what the outbox holds below it is known only when sent."""
    return b'{"prev_seq":%d,' % prev + payload[1:]


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        # Exclusive mode keeps the write lock for the life of this connection.
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(_SCHEMA)
        db.execute("BEGIN IMMEDIATE")
        db.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        db.close()
        if "locked" in str(exc):
            raise OutboxLocked(f"{path} is in use by another agent process (storage dirs cannot be shared)") from None
        raise
    return db
