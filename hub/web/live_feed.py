"""What feeds the live bus: the ingest (device, node and job changes the agents
report), the outbox (jobs the scheduler assigns or cancels) and the API's own
changes. Observes those parts from outside so they stay unaware of the panel.

Snapshots are built only while a subscriber wants them, so a hub with no
panel open pays one set lookup per message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from protocol import codec, topics
from protocol.codec import ProtocolError

from hub.mqtt.outbox import Outbox, Outgoing
from hub.fleet.registry import Fleet
from hub.mqtt.ingest import Ingest
from hub.jobs.service import JobNotFound, JobService
from .live import Bus
from hub.ids import ascii_int

log = structlog.get_logger("farmhand.hub.live")

Handle = Callable[[str, bytes, int], Awaitable[None]]


class LiveFeed:
    def __init__(self, bus: Bus, fleet: Fleet, jobs: JobService) -> None:
        self.bus = bus
        self.fleet = fleet
        self.jobs = jobs

    def device(self, node: str, device_id: str) -> None:
        key = f"{node}/{device_id}"
        if self.bus.wants("devices", key):
            snapshot = self.fleet.device(node, device_id)
            if snapshot is not None:
                self.bus.publish("devices", key, snapshot.model_dump(mode="json"))

    def job(self, job_id: str | int | None) -> None:
        if job_id is None or ascii_int(str(job_id)) is None or not self.bus.wants("jobs", str(job_id)):
            return
        try:
            job = self.jobs.get(int(job_id))
        except JobNotFound:
            return
        self.bus.publish("jobs", str(job.id), job.model_dump(mode="json"))

    def node(self, node: str) -> None:
        if self.bus.wants("nodes", node):
            for n in self.fleet.nodes():
                if n.id == node:
                    self.bus.publish("nodes", node, n.model_dump(mode="json"))

    # ------------------------------------------------------------------ sources

    def watch_ingest(self, ingest: Ingest) -> None:
        handle: Handle = ingest.handle

        async def observed(topic: str, payload: bytes, qos: int) -> None:
            await handle(topic, payload, qos)
            try:
                self._after_message(topic, payload)
            except Exception:
                # The message is already applied; a broken live update must not look like an ingest failure.
                log.warning("live_feed_failed", topic=topic, exc_info=True)

        ingest.handle = observed  # type: ignore[method-assign]

    def _after_message(self, topic: str, payload: bytes) -> None:
        parsed = topics.parse(topic)
        if parsed is None or parsed.node is None or not payload or not self.bus.subscribers:
            return
        if parsed.kind in ("device_status", "device_telemetry") and parsed.device:
            self.device(parsed.node, parsed.device)
        elif parsed.kind == "node_metrics":
            self.node(parsed.node)
        elif parsed.kind == "node_state":
            self.node(parsed.node)
            for d in self.fleet.devices():
                if d.node == parsed.node:
                    self.device(d.node, d.id)
        elif parsed.kind == "node_event":
            try:
                body = codec.decode(payload).body
            except ProtocolError:
                return
            self.job(getattr(body, "job_id", None))
            device = getattr(body, "device", None)
            if device:
                self.device(parsed.node, device)

    def watch_outbox(self, outbox: Outbox) -> None:
        send = outbox.send

        def observed(out: Outgoing) -> bool:
            sent = send(out)
            if self.bus.subscribers:
                try:
                    self.job(getattr(codec.decode(out.payload).body, "job_id", None))
                except ProtocolError:
                    pass
            return sent

        outbox.send = observed  # type: ignore[method-assign]

    def changes_middleware(self):  # type: ignore[no-untyped-def]
        """After a change through the API, tell subscribers of that resource to refetch."""
        @web.middleware
        async def announce(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
            response = await handler(request)
            if request.method not in ("GET", "HEAD", "OPTIONS") and response.status < 300:
                parts = request.path.split("/")
                if len(parts) > 3 and parts[1:3] == ["api", "v1"]:
                    self.bus.publish(parts[3], None, None)
            return response

        return announce
