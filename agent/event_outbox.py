"""The event outbox: QoS 1 events survive broker outages and agent restarts.

``append`` writes one row (topic and the encoded envelope) to SQLite and
returns only after it is committed; the row's ``seq`` is the envelope's
``seq``. A fresh outbox file starts numbering at the current Unix time in
milliseconds, and AUTOINCREMENT never reuses a number, so a reinstalled
agent never repeats a ``(sender, seq)`` the hub has already seen. Numbers are
contiguous, so the hub can see a gap where the bound below dropped an event.

The sender publishes rows in ``seq`` order with up to ``window`` awaiting
PUBACK, deletes a row only once its PUBACK arrives, and after a lost
connection starts again from the oldest row left. That re-sends what was in
flight; the hub de-duplicates on ``(sender, seq)``.

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
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

from protocol import codec
from protocol.messages import MAX_PAYLOAD_BYTES, Event
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
    def __init__(self, path: Path, sender: str, *, max_messages: int = 100_000, window: int = 64) -> None:
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
        self._in_flight: dict[int, asyncio.Future[None]] = {}
        self._acked: list[int] = []
        self._cursor = 0  # highest seq handed to the broker on this connection
        self._restart = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped_superseded = 0
        self.dropped_events = 0
        self.sent = 0

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
        """Rows not yet acknowledged by the broker (in flight included)."""
        return self._count

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def rows(self) -> list[tuple[int, str, bytes]]:
        return self.db.execute("SELECT seq, topic, payload FROM spool ORDER BY seq").fetchall()

    # ---------------------------------------------------------------- sending

    def wake(self) -> None:
        """Look for work now: after a (re)connect, or to retry sooner."""
        self._wake.set()

    def start_sender(self, session: MqttSession) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._send_loop(session), name=f"spool:{self.sender}")

    async def stop_sender(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._delete_acked()

    async def drain(self, timeout: float) -> bool:
        """Wait until every row is acknowledged (True) or ``timeout`` passes (False)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        return self._count == 0

    async def _send_loop(self, session: MqttSession) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                self._delete_acked()
                if not session.connected:
                    continue  # the (re)connect wakes us
                if self._restart:
                    self._restart = False
                    self._cursor = 0
                self._send_some(session)
            except sqlite3.Error:
                # A sender that died would strand every later event; retry instead.
                log.exception("spool_send_failed", path=str(self.path))
                await asyncio.sleep(1.0)
                self._wake.set()

    def _send_some(self, session: MqttSession) -> None:
        room = self.window - len(self._in_flight)
        if room <= 0:
            return
        rows = self.db.execute(
            "SELECT seq, topic, payload FROM spool WHERE seq > ? ORDER BY seq LIMIT ?", (self._cursor, room)
        ).fetchall()
        for seq, topic, payload in rows:
            try:
                fut = session.publish_confirmed(topic, payload)
            except NotConnected:
                self._restart = True
                return
            self._in_flight[seq] = fut
            fut.add_done_callback(lambda f, seq=seq: self._on_done(seq, f))
            self._cursor = seq

    def _on_done(self, seq: int, fut: asyncio.Future[None]) -> None:
        self._in_flight.pop(seq, None)
        if fut.cancelled() or fut.exception() is not None:
            # The connection dropped before PUBACK: resend from the oldest row left.
            self._restart = True
        else:
            self._acked.append(seq)
        self._wake.set()

    def _delete_acked(self) -> None:
        if not self._acked:
            return
        acked, self._acked = self._acked, []
        with self.transaction() as db:
            gone = db.executemany("DELETE FROM spool WHERE seq = ?", [(s,) for s in acked]).rowcount
        self._count -= gone
        self.sent += len(acked)

    def close(self) -> None:
        self._delete_acked()
        self.db.close()


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
