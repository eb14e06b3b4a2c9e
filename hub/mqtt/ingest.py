"""MQTT ingest: every message the hub receives goes through here, one at a time.

Each message is decoded once, checked against what its topic may carry, and its
typed body handed to the components that subscribed to its type (see
``subscribe`` and ``observe``) before the handler returns; ``MqttSession``
acknowledges a QoS 1 message only then, so anything acknowledged is on disk. A
lock keeps messages strictly in arrival order even though gmqtt runs each
handler in its own task. A bad message is logged and counted (see
``/healthz``) and the loop goes on.

A node's event is stored first (``events``, unique on sender and seq) and
applied only when new, inside that same transaction, so a replay after an
outage is applied exactly once.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from types import UnionType
from typing import Any, Generic, Protocol, TypeVar, get_args

import structlog
from sqlite_utils import Database

from protocol import codec, topics
from protocol.codec import ProtocolError
from protocol.messages import Envelope, Model

from hub.store import Store, dumps, timestamp, utcnow

from .outbox import CommandOutbox, Outgoing

log = structlog.get_logger("farmhand.hub.ingest")

B = TypeVar("B", bound=Model)

_HANDLED = ("node_state", "device_status", "device_telemetry", "node_metrics", "node_event", "hub_request")


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
    at: str  # the envelope's timestamp, in the store's form
    node: str | None = None  # the agent whose topic it came on
    client: str | None = None  # a script's client id (hub requests)
    db: Database | None = None  # a node's event: the open transaction that stored it


class SeqWatcher(Protocol):
    """Follows each node's event numbering (the reconciler: gaps, births deferred until events arrive)."""

    def before(self, node: str, seq: int) -> None: ...

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


class Ingest:
    def __init__(self, store: Store, outbox: CommandOutbox) -> None:
        self.store = store
        self.outbox = outbox
        self.counts: Counter[str] = Counter()
        self._apply: defaultdict[type[Model], list[Apply]] = defaultdict(list)
        self._observe: defaultdict[type[Model], list[Observe]] = defaultdict(list)
        self._reschedule: list[Callable[[], None]] = []
        self._seq_watchers: list[SeqWatcher] = []
        self._lock = asyncio.Lock()

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

    async def handle(self, topic: str, payload: bytes, qos: int) -> None:  # noqa: ARG002 - MqttSession's signature
        async with self._lock:
            self.counts["received"] += 1
            try:
                self._handle(topic, payload)
            except Exception:
                # A bug must not wedge the session; the message is counted and logged.
                self._reject("errors", topic, "handler raised", exc_info=True)

    def _handle(self, topic: str, payload: bytes) -> None:
        if not payload:
            # How MQTT deletes a retained message; nothing to apply.
            self.counts["retained_cleared"] += 1
            return
        parsed = topics.parse(topic)
        if parsed is None or parsed.kind not in _HANDLED:
            self._reject("unknown_topic", topic, "not a topic the hub handles")
            return
        try:
            envelope = codec.decode(payload)
        except ProtocolError as exc:
            self._reject("malformed", topic, str(exc))
            return
        if not isinstance(envelope.body, topics.allowed_bodies(parsed.kind)):
            self._reject("wrong_type", topic, f"{envelope.body.type} is not allowed on this topic")
            return
        if parsed.node is not None and envelope.sender != parsed.node:
            self._reject("sender_mismatch", topic, f"sender {envelope.sender!r} on node {parsed.node!r}'s topic")
            return
        device = getattr(envelope.body, "device", None)
        if parsed.device is not None and device != parsed.device:
            self._reject("device_mismatch", topic, f"device {device!r} on device {parsed.device!r}'s topic")
            return
        if parsed.kind == "node_event":
            self._event(parsed, envelope)
        else:
            msg = Received(envelope.body, envelope.sender, timestamp(envelope.ts), parsed.node, parsed.client)
            effects = Effects()
            for apply in self._apply[type(msg.body)]:
                effects.add(apply(msg))
            self._after(msg, effects)

    def _reject(self, reason: str, topic: str, detail: str, exc_info: bool = False) -> None:
        self.counts[reason] += 1
        log.warning("message_rejected", reason=reason, topic=topic, detail=detail, count=self.counts[reason],
                    exc_info=exc_info)

    def _event(self, t: topics.ParsedTopic, env: Envelope) -> None:
        """Store, then apply only if new: a replay after an outage is applied exactly once."""
        assert t.node is not None
        if env.seq is None:
            self._reject("missing_seq", topics.node_event(t.node), "events must carry seq")
            return
        node, seq, body = t.node, env.seq, env.body
        at = timestamp(env.ts)
        effects = Effects()
        for watcher in self._seq_watchers:
            watcher.before(node, seq)
        with self.store.transaction() as db:
            stored = db.execute(
                "INSERT OR IGNORE INTO events (sender, seq, node, type, ts, received_at, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (env.sender, env.seq, t.node, body.type, at, utcnow(), dumps(body.model_dump(mode="json"))),
            ).rowcount
            if stored:
                msg = Received(body, env.sender, at, t.node, db=db)
                appliers = self._apply[type(body)]
                for apply in appliers:
                    effects.add(apply(msg))
                if not appliers:
                    log.debug("event_stored_only", type=body.type, sender=env.sender, seq=env.seq)
        if not stored:
            self.counts["duplicate_events"] += 1
            log.info("event_duplicate", sender=env.sender, seq=env.seq, type=body.type)
            if any([w.after(node, seq) for w in self._seq_watchers]):
                self.reschedule()
            return
        self.counts["events"] += 1
        # Whether a watcher wants a pass is asked after the observers and commands, as it always was.
        self._after(Received(body, env.sender, at, node), effects,
                    lambda: any([w.after(node, seq) for w in self._seq_watchers]))

    def _after(self, msg: Received[Any], effects: Effects, more: Callable[[], bool] = lambda: False) -> None:
        for observe in self._observe[type(msg.body)]:
            try:
                observe(msg)
            except Exception:
                # The message is committed; an observer's bug must not look like an ingest failure.
                log.warning("message_observer_failed", type=msg.body.type, exc_info=True)
        for out in effects.commands:
            self.outbox.send(out)
        if more() or effects.reschedule:
            self.reschedule()

    def reschedule(self) -> None:
        for wake in self._reschedule:
            wake()

    def counters(self) -> dict[str, int]:
        return dict(self.counts)
