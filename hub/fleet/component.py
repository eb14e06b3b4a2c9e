"""``Fleet``: nodes and devices as their agents describe them, and what operators do to devices directly."""

from __future__ import annotations

from aiohttp import web
from pydantic_core import to_json

from protocol.messages import DeviceError, DeviceStatus, HostMetrics, NodeState, Telemetry

from hub.api import ApiProblem, Items, ListError, Op, PageQuery, listed, page, respond
from hub.bus import Bus
from hub.ids import ascii_int
from hub.component import Component
from hub.config import HubConfig
from hub.jobs import Jobs
from hub.mqtt import Effects, Mqtt, Received
from hub.store import Store

from .console import DeviceConsole
from .controls import DeviceControls
from .profiles import DeviceProfiles
from .registry import FleetState
from .schemas import Device, DeviceItems, DeviceQuery, Node
from .tables import TABLES



class Fleet(Component):
    name = "fleet"
    tables = TABLES

    def __init__(self, config: HubConfig, store: Store, mqtt: Mqtt, bus: Bus, jobs: Jobs) -> None:
        self.state = FleetState(store, config.telemetry_history_interval_s)
        self.console = DeviceConsole(store, mqtt.outbox, bus, mqtt.ingest)
        self.controls = DeviceControls(store, mqtt.outbox, jobs.service)
        self.profiles = DeviceProfiles(store, jobs.scheduler.wake)
        self.rebirths = mqtt.rebirths
        ingest = mqtt.ingest
        ingest.subscribe(NodeState, self._node_state)
        ingest.subscribe(DeviceStatus, self._device_status)
        ingest.subscribe(Telemetry, self._telemetry)
        ingest.subscribe(HostMetrics, self._metrics)
        ingest.subscribe(DeviceError, self._device_error)

    # ------------------------------------------------------------------ public interface

    def nodes(self) -> list[Node]:
        return self.state.nodes()

    def devices(self) -> list[Device]:
        return self.state.devices()

    def device(self, node: str, device_id: str) -> Device | None:
        return self.state.device(node, device_id)

    def latest_telemetry(self, node: str, device_id: str) -> Telemetry | None:
        """The last reading in memory, no SQL (the farm grid's feed, hub/live/tiles.py)."""
        return self.state.latest_telemetry(node, device_id)

    def heard_at(self, node: str, device_id: str) -> str | None:
        """When the device's last telemetry arrived (hub clock), since this hub started; alerting reads it."""
        return self.state.heard_at(node, device_id)

    # ------------------------------------------------------------------ messages

    def _node_state(self, msg: Received[NodeState]) -> Effects:
        assert msg.node is not None
        return Effects(reschedule=self.state.node_state(msg.node, msg.body))

    def _device_status(self, msg: Received[DeviceStatus]) -> Effects:
        assert msg.node is not None
        if not self.state.knows(msg.node, msg.body.device):
            self.rebirths.ask(msg.node, f"a status of device {msg.body.device!r}, which its birth did not list")
        return Effects(reschedule=self.state.device_status(msg.node, msg.body))

    def _telemetry(self, msg: Received[Telemetry]) -> None:
        assert msg.node is not None
        self.state.telemetry(msg.node, msg.ts, msg.body)

    def _metrics(self, msg: Received[HostMetrics]) -> None:
        assert msg.node is not None
        self.state.metrics(msg.node, msg.body)

    def _device_error(self, msg: Received[DeviceError]) -> None:
        assert msg.db is not None and msg.node is not None
        self.state.device_error(msg.db, msg.node, msg.body)

    # ------------------------------------------------------------------ HTTP

    def ops(self) -> list[Op]:
        return [
            Op("GET", "/api/v1/nodes", self.list_nodes, response=Items[Node], query=PageQuery, summary="Agents"),
            Op("GET", "/api/v1/devices", self.list_devices, response=DeviceItems, query=DeviceQuery,
               summary="Printers and render devices (?since=REVISION: only those changed since)"),
            *self.profiles.ops(), *self.controls.ops(), *self.console.ops(),
        ]

    async def list_nodes(self, request: web.Request) -> web.Response:
        return respond(listed(request, self.nodes(), ("online", "hostname")))

    async def list_devices(self, request: web.Request) -> web.Response:
        """A page built from the kept state: only the page's devices are made into models."""
        revision = self.state.revision
        query = {k: v for k, v in request.query.items() if k != "since"}
        since = request.query.get("since")
        try:
            entries = self.state.entries(None if since is None else _since(since))
            chunk, cursor = page(query, entries, ("node", "state", "online", "kind"))
        except ListError as exc:
            raise ApiProblem(422, "Invalid list query", str(exc)) from None
        # DeviceItems, written around the page's kept JSON (one model per device would be made again).
        body = b'{"items":%s,"next":%s,"revision":%d}' % (self.state.items_json(chunk), to_json(cursor), revision)
        return web.Response(body=body, content_type="application/json")


def _since(raw: str) -> int:
    value = ascii_int(raw)
    if value is None or value < 0:
        raise ListError(f"since must be a revision from an earlier answer (an integer of 0 or more); got {raw!r}")
    return value
