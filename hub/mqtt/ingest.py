"""MQTT ingest: every message the hub receives goes through here, one at a time.

Each message is decoded, checked against what its topic may carry and applied
before the handler returns; ``MqttSession`` acknowledges a QoS 1 message only
then, so anything acknowledged is on disk. A lock keeps messages strictly in
arrival order even though gmqtt runs each handler in its own task. A bad
message is logged and counted (see ``/healthz``) and the loop goes on.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog

from protocol import codec, topics
from protocol.codec import ProtocolError
from protocol.messages import CommandAck, DeviceError, Envelope

from .outbox import Outbox
from hub.fleet.registry import Fleet
from hub.jobs.tracker import Effects, JobEvent, JobTracker
from hub.render.events import RenderEvent, RenderTracker
from hub.jobs.mqtt_api import ScriptRequests
from hub.store import Store, dumps, timestamp, utcnow

log = structlog.get_logger("farmhand.hub.ingest")


class Ingest:
    def __init__(self, store: Store, fleet: Fleet, tracker: JobTracker, outbox: Outbox,
                 requests: ScriptRequests, reschedule: Callable[[], None]) -> None:
        self.store = store
        self.fleet = fleet
        self.tracker = tracker
        self.outbox = outbox
        self.requests = requests
        self.reschedule = reschedule
        self.render: RenderTracker | None = None  # set by the hub: render events and acks of render commands
        # Called with (node, body) for each new event after its commit (the console, live views).
        self.observers: list[Callable[[str, Any], None]] = []
        self.counts: Counter[str] = Counter()
        self._lock = asyncio.Lock()
        self._routes: dict[str, Callable[[topics.ParsedTopic, Envelope], None]] = {
            "node_state": self._node_state,
            "device_status": self._device_status,
            "device_telemetry": self._telemetry,
            "node_metrics": self._metrics,
            "node_event": self._event,
            "hub_request": self._request,
        }

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
        if parsed is None or parsed.kind not in self._routes:
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
        self._routes[parsed.kind](parsed, envelope)

    def _reject(self, reason: str, topic: str, detail: str, exc_info: bool = False) -> None:
        self.counts[reason] += 1
        log.warning("message_rejected", reason=reason, topic=topic, detail=detail, count=self.counts[reason],
                    exc_info=exc_info)

    # ------------------------------------------------------------------ routes

    def _node_state(self, t: topics.ParsedTopic, env: Envelope) -> None:
        assert t.node is not None
        if self.fleet.node_state(t.node, env.body):  # type: ignore[arg-type]
            self.reschedule()

    def _device_status(self, t: topics.ParsedTopic, env: Envelope) -> None:
        assert t.node is not None
        if self.fleet.device_status(t.node, env.body):  # type: ignore[arg-type]
            self.reschedule()

    def _telemetry(self, t: topics.ParsedTopic, env: Envelope) -> None:
        assert t.node is not None
        self.fleet.telemetry(t.node, timestamp(env.ts), env.body)  # type: ignore[arg-type]

    def _metrics(self, t: topics.ParsedTopic, env: Envelope) -> None:
        assert t.node is not None
        self.fleet.metrics(t.node, env.body)  # type: ignore[arg-type]

    def _request(self, t: topics.ParsedTopic, env: Envelope) -> None:
        assert t.client is not None
        self.requests.handle(t.client, env)

    def _event(self, t: topics.ParsedTopic, env: Envelope) -> None:
        """Store, then apply only if new: a replay after an outage is applied exactly once."""
        assert t.node is not None
        if env.seq is None:
            self._reject("missing_seq", topics.node_event(t.node), "events must carry seq")
            return
        body = env.body
        at = timestamp(env.ts)
        effects = Effects()
        with self.store.transaction() as db:
            stored = db.execute(
                "INSERT OR IGNORE INTO events (sender, seq, node, type, ts, received_at, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (env.sender, env.seq, t.node, body.type, at, utcnow(), dumps(body.model_dump(mode="json"))),
            ).rowcount
            if not stored:
                self.counts["duplicate_events"] += 1
                log.info("event_duplicate", sender=env.sender, seq=env.seq, type=body.type)
                return
            if isinstance(body, JobEvent | CommandAck):
                effects = self.tracker.apply(db, t.node, at, body)
                if isinstance(body, CommandAck) and self.render is not None:
                    more = self.render.apply(db, t.node, at, body)
                    effects.commands += more.commands
                    effects.reschedule |= more.reschedule
            elif isinstance(body, RenderEvent) and self.render is not None:
                effects = self.render.apply(db, t.node, at, body)
            elif isinstance(body, DeviceError):
                self.fleet.device_error(db, t.node, body)
            else:
                log.debug("event_stored_only", type=body.type, sender=env.sender, seq=env.seq)
        self.counts["events"] += 1
        for observe in self.observers:
            try:
                observe(t.node, body)
            except Exception:
                # The event is committed; an observer's bug must not look like an ingest failure.
                log.warning("event_observer_failed", type=body.type, exc_info=True)
        for out in effects.commands:
            self.outbox.send(out)
        if effects.reschedule:
            self.reschedule()

    def counters(self) -> dict[str, int]:
        return {**self.counts, "stray_events": self.tracker.stray,
                "acks_for_unknown_commands": self.tracker.unknown_commands}
