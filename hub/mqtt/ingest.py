"""MQTT ingest: every message the hub receives goes through here, in arrival order, in batches.

Each message is decoded once, checked against what its topic may carry, and its
typed body handed to the components that subscribed to its type (see
``subscribe`` and ``observe``). Messages are applied by group commit: the MQTT
session hands each message to ``receive`` as it is read, with the PUBACK to send
(no task per message); one task applies whatever has queued
(at most ``batch_max``, after lingering ``linger_s`` when few are waiting) in
one transaction, each message in a savepoint of its own so a failing one is
rolled back alone, then commits once and only then acknowledges the batch's QoS 1 messages, so anything
acknowledged is on disk; one fsync serves the whole batch. Observers, commands
and a scheduler wake-up run after the commit. A bad message is logged and
counted (see ``/healthz``) and the batch goes on.

A node's event is stored first (``events``, unique on sender and seq) and
applied only when new, inside that same transaction, so a replay after an
outage is applied exactly once; new or replayed, it moves the node's
confirmation mark (``EventConfirmations``), published after the commit.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache, partial
from types import UnionType
from typing import Any, Generic, Protocol, TypeVar, get_args

import structlog
from sqlite_utils import Database

from protocol import codec, topics
from protocol.codec import ProtocolError
from protocol.messages import Envelope, Model
from protocol.mqtt import Ack

from hub.store import Store, timestamp, utcnow
from hub.tasks import stop_tasks

from .confirm import EventConfirmations
from .outbox import CommandOutbox, Outgoing

log = structlog.get_logger("farmhand.hub.ingest")

B = TypeVar("B", bound=Model)

_HANDLED = ("node_state", "device_status", "device_telemetry", "node_metrics", "node_event", "hub_request")

TOPICS_CACHED = 32_768
"""Parsed topics kept (a farm's topics repeat: a few per device and node); past this the least recent go."""
_TOPIC_CACHED_LEN = 192  # two ids of the protocol's longest (64) make a topic of 163; longer ones are junk
_parse_cached = lru_cache(maxsize=TOPICS_CACHED)(topics.parse)  # ParsedTopic is frozen: safe to share


def _parse_topic(topic: str) -> topics.ParsedTopic | None:
    """``topics.parse``, cached; a junk topic of any length (one MQTT level can be 64 KiB) is parsed each time,
    so the cache stays small whatever a client sends."""
    return _parse_cached(topic) if len(topic) <= _TOPIC_CACHED_LEN else topics.parse(topic)

_INSERT_EVENT = ("INSERT OR IGNORE INTO events (sender, seq, node, type, ts, received_at, body)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?)")


@dataclass
class Effects:
    """What applying a message asks for once its transaction has committed."""

    commands: list[Outgoing] = field(default_factory=list)
    reschedule: bool = False  # a device may have become free or a job went back to the queue

    def add(self, more: Effects | None) -> None:
        if more is not None:
            self.commands += more.commands
            self.reschedule |= more.reschedule


@dataclass(frozen=True)
class Received(Generic[B]):
    """One message, decoded once, as its subscribers get it."""

    body: B
    sender: str
    ts: datetime  # the envelope's timestamp
    node: str | None = None  # the agent whose topic it came on
    client: str | None = None  # a script's client id (hub requests)
    # A node's event: the open transaction that stored it, for its appliers. Observers get the same
    # message after the commit (it is built once per event) and never write through it.
    db: Database | None = None

    @cached_property
    def at(self) -> str:
        """The envelope's timestamp in the store's form (made when asked: telemetry mostly never is)."""
        return timestamp(self.ts)


class SeqWatcher(Protocol):
    """Follows each node's event numbering (the reconciler: gaps, births deferred until events arrive)."""

    def before(self, node: str, seq: int, prev: int | None) -> None:
        """``prev``: the event's ``prev_seq`` (None from an agent that predates confirmations)."""
        ...

    def after(self, node: str, seq: int) -> bool:
        """Returns True when a scheduler pass is due."""
        ...


Apply = Callable[[Received[Any]], Effects | None]
Observe = Callable[[Received[Any]], None]


def _types(declared: type[Model] | UnionType | tuple[type[Model], ...]) -> tuple[type[Model], ...]:
    if isinstance(declared, tuple):
        return tuple(t for d in declared for t in _types(d))
    if isinstance(declared, UnionType):
        return _types(get_args(declared))
    return (declared,)


Followup = Callable[[], None]


class Ingest:
    def __init__(self, store: Store, outbox: CommandOutbox, confirmations: EventConfirmations, *,
                 batch_max: int = 500, linger_s: float = 0.002) -> None:
        self.store = store
        self.outbox = outbox
        self.confirmations = confirmations
        self.batch_max = batch_max
        self.linger_s = linger_s
        self.counts: Counter[str] = Counter()
        self.by_type: Counter[str] = Counter()  # messages received, by body type
        self.batches = 0
        self.batch_seconds = 0.0
        self._apply: defaultdict[type[Model], list[Apply]] = defaultdict(list)
        self._observe: defaultdict[type[Model], list[Observe]] = defaultdict(list)
        self._reschedule: list[Callable[[], None]] = []
        self._seq_watchers: list[SeqWatcher] = []
        self._queue: deque[tuple[str, bytes, Ack | None]] = deque()
        self._wake = asyncio.Event()
        self._now = utcnow()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, types: type[Model] | UnionType | tuple[type[Model], ...], apply: Apply) -> None:
        """``apply`` changes state for each message of these body types; for a node's event it runs
        inside the transaction that stores the event. Handlers of one type run in subscription order."""
        for t in _types(types):
            self._apply[t].append(apply)

    def observe(self, types: type[Model] | UnionType | tuple[type[Model], ...], observe: Observe) -> None:
        """``observe`` hears each message of these body types after it is applied and committed (live views);
        its failure is logged, never taken for the message's."""
        for t in _types(types):
            self._observe[t].append(observe)

    def watch_seq(self, watcher: SeqWatcher) -> None:
        """``watcher`` sees every node event's seq: ``before`` it is stored, ``after`` (new or a replay)."""
        self._seq_watchers.append(watcher)

    def applied(self) -> frozenset[type[Model]]:
        """The body types some component subscribed to (changes state on)."""
        return frozenset(t for t, fns in self._apply.items() if fns)

    def observed(self) -> frozenset[type[Model]]:
        """The body types some component only watches (live views)."""
        return frozenset(t for t, fns in self._observe.items() if fns)

    def on_reschedule(self, wake: Callable[[], None]) -> None:
        """``wake`` runs when an applied message may let a queued job (or task) start."""
        self._reschedule.append(wake)

    # ------------------------------------------------------------------ messages

    def receive(self, topic: str, payload: bytes, qos: int, ack: Ack | None) -> None:
        """Queue one message (the MQTT session's receiver); ``ack`` runs once its batch is committed (then
        the broker gets PUBACK)."""
        self._queue.append((topic, payload, ack))
        if self._task is None:
            self._task = asyncio.create_task(self._batches(), name="hub:ingest")
        self._wake.set()

    async def handle(self, topic: str, payload: bytes, qos: int) -> None:
        """``receive``, awaited: for QoS 1, returns once the message's batch is committed."""
        if not qos:
            self.receive(topic, payload, qos, None)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.receive(topic, payload, qos, partial(_settle, done))
        await done

    async def stop(self) -> None:
        """Apply what is queued, then stop the batch task."""
        task, self._task = self._task, None
        await stop_tasks(task)
        while self._queue:
            self._batch()

    async def _batches(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                if len(self._queue) < self.batch_max and self.linger_s:
                    await asyncio.sleep(self.linger_s)  # a few ms for the rest of a burst to arrive
                self._batch()
                await asyncio.sleep(0)  # let the network read more

    def _batch(self) -> None:
        n = min(len(self._queue), self.batch_max)
        batch = [self._queue.popleft() for _ in range(n)]
        started = time.perf_counter()
        followups: list[Followup] = []
        self._now = utcnow()  # when this batch's events were received
        try:
            with self.store.transaction() as db:
                for topic, payload, _ in batch:
                    self.counts["received"] += 1
                    # A savepoint of one fixed name (cheaper than a named one per message): a failing
                    # message is rolled back alone.
                    db.conn.execute("SAVEPOINT ingest_message")
                    try:
                        followup = self._handle(topic, payload)
                    except Exception:
                        db.conn.execute("ROLLBACK TO ingest_message")
                        db.conn.execute("RELEASE ingest_message")
                        # A bug must not wedge the session; the message is counted and logged.
                        self._reject("errors", topic, "handler raised", exc_info=True)
                        continue
                    db.conn.execute("RELEASE ingest_message")
                    if followup is not None:
                        followups.append(followup)
                self.confirmations.save(db)
        except Exception:
            # The commit failed (a full disk): nothing of the batch is stored or confirmed; the
            # agents send their events again when no confirmation comes.
            self.counts["batches_failed"] += 1
            log.exception("ingest_batch_failed", messages=n)
            followups = []
        finally:
            for _, _, ack in batch:
                if ack is not None:
                    try:
                        ack()
                    except Exception:  # a connection gone meanwhile: the broker sends the message again
                        log.warning("ingest_ack_failed", exc_info=True)
        self.batches += 1
        self.batch_seconds += time.perf_counter() - started
        for followup in followups:
            followup()
        self.confirmations.flush_soon()

    def _handle(self, topic: str, payload: bytes) -> Followup | None:
        if not payload:
            # How MQTT deletes a retained message; nothing to apply.
            self.counts["retained_cleared"] += 1
            return None
        parsed = _parse_topic(topic)
        if parsed is None or parsed.kind not in _HANDLED:
            self._reject("unknown_topic", topic, "not a topic the hub handles")
            return None
        try:
            envelope = codec.decode(payload)
        except ProtocolError as exc:
            self._reject("malformed", topic, str(exc))
            return None
        self.by_type[envelope.body.type] += 1
        if not isinstance(envelope.body, topics.allowed_bodies(parsed.kind)):
            self._reject("wrong_type", topic, f"{envelope.body.type} is not allowed on this topic")
            return None
        if parsed.node is not None and envelope.sender != parsed.node:
            self._reject("sender_mismatch", topic, f"sender {envelope.sender!r} on node {parsed.node!r}'s topic")
            return None
        device = getattr(envelope.body, "device", None)
        if parsed.device is not None and device != parsed.device:
            self._reject("device_mismatch", topic, f"device {device!r} on device {parsed.device!r}'s topic")
            return None
        if parsed.kind == "node_event":
            return self._event(parsed, envelope)
        msg = Received(envelope.body, envelope.sender, envelope.ts, parsed.node, parsed.client)
        effects = Effects()
        for apply in self._apply[type(msg.body)]:
            effects.add(apply(msg))
        if not effects.commands and not effects.reschedule and not self._observe[type(msg.body)]:
            return None  # telemetry, mostly: nothing to do after the commit
        return lambda: self._after(msg, effects)

    def _reject(self, reason: str, topic: str, detail: str, exc_info: bool = False) -> None:
        self.counts[reason] += 1
        log.warning("message_rejected", reason=reason, topic=topic, detail=detail, count=self.counts[reason],
                    exc_info=exc_info)

    def _event(self, t: topics.ParsedTopic, env: Envelope) -> Followup | None:
        """Store, then apply only if new: a replay after an outage is applied exactly once."""
        assert t.node is not None
        if env.seq is None:
            self._reject("missing_seq", topics.node_event(t.node), "events must carry seq")
            return None
        node, seq, body = t.node, env.seq, env.body
        effects = Effects()
        for watcher in self._seq_watchers:
            watcher.before(node, seq, env.prev_seq)
        db = self.store.db
        # The hot path: sqlite3 itself (sqlite-utils' execute adds a call and a check per statement).
        msg = Received(body, env.sender, env.ts, node, db=db)
        stored = db.conn.execute(
            _INSERT_EVENT, (env.sender, seq, node, body.type, msg.at, self._now, body.model_dump_json()),
        ).rowcount
        self.confirmations.stored(db, node, seq, env.prev_seq)
        if stored:
            appliers = self._apply[type(body)]
            for apply in appliers:
                effects.add(apply(msg))
            if not appliers:
                log.debug("event_stored_only", type=body.type, sender=env.sender, seq=env.seq)
        # Whether a watcher wants a pass is asked inside the transaction, after the event is applied; every
        # watcher hears of the event, whatever the others answer.
        wake = False
        for watcher in self._seq_watchers:
            if watcher.after(node, seq):
                wake = True
        if not stored:
            self.counts["duplicate_events"] += 1
            log.debug("event_duplicate", sender=env.sender, seq=env.seq, type=body.type)
            return self.reschedule if wake else None
        self.counts["events"] += 1
        effects.reschedule |= wake
        return lambda: self._after(msg, effects)

    def _after(self, msg: Received[Any], effects: Effects) -> None:
        for observe in self._observe[type(msg.body)]:
            try:
                observe(msg)
            except Exception:
                # The message is committed; an observer's bug must not look like an ingest failure.
                log.warning("message_observer_failed", type=msg.body.type, exc_info=True)
        for out in effects.commands:
            self.outbox.send(out)
        if effects.reschedule:
            self.reschedule()

    def reschedule(self) -> None:
        for wake in self._reschedule:
            wake()

    def counters(self) -> dict[str, int]:
        return dict(self.counts)


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
