"""What feeds the live bus: the ingest (device, node and job changes the agents report),
the command outbox (jobs the scheduler assigns or cancels) and the API's own changes.

It subscribes to them like any other component, so they stay unaware of the
panel. Snapshots are built only while a subscriber wants them, so a hub with
no panel open pays one set lookup per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel

from protocol.messages import EVENT_TYPES, DeviceStatus, HostMetrics, NodeState, Telemetry

from hub.bus import Bus
from hub.ids import ascii_int
from hub.mqtt import Ingest, Outgoing, Received



COALESCE_S = 0.2
"""How long a device's changes gather before its one update goes out."""


class LiveFeed:
    def __init__(self, bus: Bus, ingest: Ingest, *, device: Callable[[str, str], BaseModel | None],
                 devices_of: Callable[[str], list[str]], node: Callable[[str], BaseModel | None],
                 job: Callable[[int], BaseModel | None]) -> None:
        """``device``, ``node`` and ``job`` read a snapshot (None: no such thing); ``devices_of`` lists a node's."""
        self.bus = bus
        self._device, self._devices_of, self._node, self._job = device, devices_of, node, job
        self._changed: dict[str, None] = {}  # devices changed since the last flush, in order
        self._flush: asyncio.TimerHandle | None = None
        ingest.observe(DeviceStatus | Telemetry, self._device_changed)
        ingest.observe(HostMetrics, self._node_changed)
        ingest.observe(NodeState, self._node_state)
        ingest.observe(EVENT_TYPES, self._event)

    def device(self, node: str, device_id: str) -> None:
        """Announce a device's new snapshot within ``COALESCE_S``: a printer's telemetry every second,
        times thousands, reaches a panel as at most one update per device per flush, each snapshot built
        once for every subscriber."""
        key = f"{node}/{device_id}"
        if not self.bus.wants("devices", key):
            return
        self._changed[key] = None
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(COALESCE_S, self._publish_devices)

    def _publish_devices(self) -> None:
        self._flush = None
        changed, self._changed = self._changed, {}
        for key in changed:
            node, device_id = key.split("/", 1)
            if self.bus.wants("devices", key):
                snapshot = self._device(node, device_id)
                if snapshot is not None:
                    self.bus.publish("devices", key, snapshot.model_dump(mode="json"))

    def job(self, job_id: str | int | None) -> None:
        if job_id is None or ascii_int(str(job_id)) is None or not self.bus.wants("jobs", str(job_id)):
            return
        job = self._job(int(job_id))
        if job is not None:
            self.bus.publish("jobs", str(int(job_id)), job.model_dump(mode="json"))

    def node(self, node: str) -> None:
        if self.bus.wants("nodes", node):
            snapshot = self._node(node)
            if snapshot is not None:
                self.bus.publish("nodes", node, snapshot.model_dump(mode="json"))

    # ------------------------------------------------------------------ sources

    def _device_changed(self, msg: Received[DeviceStatus | Telemetry]) -> None:
        if msg.node is not None and self.bus.subscribers:
            self.device(msg.node, msg.body.device)

    def _node_changed(self, msg: Received[HostMetrics]) -> None:
        if msg.node is not None and self.bus.subscribers:
            self.node(msg.node)

    def _node_state(self, msg: Received[NodeState]) -> None:
        if msg.node is None or not self.bus.subscribers:
            return
        self.node(msg.node)
        for device_id in self._devices_of(msg.node):
            self.device(msg.node, device_id)

    def _event(self, msg: Received[BaseModel]) -> None:
        if msg.node is None or not self.bus.subscribers:
            return
        self.job(getattr(msg.body, "job_id", None))
        device = getattr(msg.body, "device", None)
        if device:
            self.device(msg.node, device)

    def command_sent(self, out: Outgoing) -> None:
        """Command outbox observer: a start or cancel changes the job's row."""
        if self.bus.subscribers:
            self.job(getattr(out.body, "job_id", None))

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
