"""The farm grid's feed: every device in one read, then coalesced changes on the live topic ``tiles``.

At a few thousand devices reporting once a second, a frame per reading (the
``devices`` topic) costs the hub a database read and a queue entry per reading
per panel, and a busy panel's queue overflows. Here a reading only marks its
device; every ``interval_s`` the latest change of each marked device goes out
as ONE message, so a panel's cost is a few messages a second however large the
farm. Telemetry-only changes come from the fleet's memory (no SQL); a status
change sends the device's whole snapshot.

Message data: ``{"devices": [...], "reload": bool}``; each device item is a full
``Device`` or ``{"ref", "temperatures"}`` plus ``progress`` and ``remaining_s`` when the reading has them. ``reload``
asks the panel to refetch ``GET /api/v1/tiles`` (a node came or went, a spool
was loaded through the API).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from pydantic import BaseModel, Field, TypeAdapter
from typing_extensions import NotRequired, TypedDict  # pydantic needs these before Python 3.12

from protocol.messages import EVENT_TYPES, DeviceStatus, Heater, NodeState, Telemetry

from hub.bus import Bus
from hub.fleet import Device
from hub.mqtt import Ingest, Received

if TYPE_CHECKING:
    from hub.fleet import Fleet

log = structlog.get_logger("farmhand.hub.tiles")

TOPIC = "tiles"
# API changes to these resources can change what a tile shows (a spool loaded, a device renamed).
RELOADING = frozenset({"devices", "spools", "filaments", "nodes"})
DEVICES = TypeAdapter(list[Device])


class TileReading(TypedDict):
    """A tile's telemetry-only change."""

    ref: str
    temperatures: dict[str, Heater]
    progress: NotRequired[float]  # left out when the reading has none: the tile keeps its last
    remaining_s: NotRequired[float]


# A flush at 5,000 devices is thousands of readings: serialised in one call, not a dump per heater and then
# json.dumps over the dicts (two thirds of the hub's time in a burst of readings, issue 19).
READINGS = TypeAdapter(list[TileReading])


class Tiles(BaseModel):
    """Every device in one answer (``GET /api/v1/tiles``); then the live topic ``tiles`` sends changes."""

    items: list[Device]
    interval_s: float = Field(description="how often the live topic 'tiles' sends the changes it gathered")


class TileFeed:
    def __init__(self, bus: Bus, ingest: Ingest, fleet: Fleet, interval_s: float = 0.1) -> None:
        self.bus = bus
        self.fleet = fleet
        ingest.observe(Telemetry, self._telemetry)
        ingest.observe(DeviceStatus, self._status)
        ingest.observe(EVENT_TYPES, self._status)  # a job started or ended there, a spool ran low
        ingest.observe(NodeState, lambda msg: self.reload())  # a birth or a death: devices came or went
        self.interval_s = interval_s
        self._dirty: dict[tuple[str, str], bool] = {}  # (node, device) -> status changed (send the whole snapshot)
        self._reload = False
        self._timer: asyncio.TimerHandle | None = None
        self.flushes = 0

    async def list_tiles(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        devices = self.fleet.devices()
        # One serialiser call for the whole list: at 5,000 devices, per-item dumps were most of the answer's time.
        body = b'{"items":' + DEVICES.dump_json(devices) + b',"interval_s":' + str(self.interval_s).encode() + b"}"
        log.debug("tiles_listed", devices=len(devices), ms=round((time.perf_counter() - started) * 1000, 1))
        return web.Response(body=body, content_type="application/json")

    # ------------------------------------------------------------------ marking

    def mark(self, node: str, device: str, whole: bool) -> None:
        if not self.bus.wants(TOPIC):
            return
        key = (node, device)
        self._dirty[key] = whole or self._dirty.get(key, False)
        self._schedule()

    def reload(self) -> None:
        if self.bus.wants(TOPIC):
            self._reload = True
            self._schedule()

    def _schedule(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self._flush)

    def _flush(self) -> None:
        self._timer = None
        dirty, self._dirty = self._dirty, {}
        reload, self._reload = self._reload, False
        readings: list[TileReading] = []
        snapshots: list[dict[str, Any]] = []
        for (node, device), whole in dirty.items():
            try:
                self._item(node, device, whole, readings, snapshots)
            except Exception:
                log.warning("tile_failed", node=node, device=device, exc_info=True)
        if readings or snapshots or reload:
            self.flushes += 1
            items = [json.dumps(snapshots, separators=(",", ":")).encode()[1:-1] if snapshots else b"",
                     READINGS.dump_json(readings)[1:-1] if readings else b""]
            self.bus.publish_json(TOPIC, None, b'{"devices":[' + b",".join(i for i in items if i)
                                  + b'],"reload":' + (b"true" if reload else b"false") + b"}")

    def _item(self, node: str, device: str, whole: bool, readings: list[TileReading],
              snapshots: list[dict[str, Any]]) -> None:
        reading = self.fleet.latest_telemetry(node, device)
        if whole or reading is None:
            snapshot = self.fleet.device(node, device)
            if snapshot is not None:
                item = snapshot.model_dump(mode="json")
                if reading is not None and reading.remaining_s is not None:
                    item["remaining_s"] = reading.remaining_s
                snapshots.append(item)
            return
        change: TileReading = {"ref": f"{node}/{device}", "temperatures": reading.temperatures}
        if reading.progress is not None:
            change["progress"] = reading.progress
        if reading.remaining_s is not None:
            change["remaining_s"] = reading.remaining_s
        readings.append(change)

    # ------------------------------------------------------------------ sources

    def _telemetry(self, msg: Received[Telemetry]) -> None:
        if msg.node is not None and self.bus.subscribers:
            self.mark(msg.node, msg.body.device, whole=False)

    def _status(self, msg: Received[Any]) -> None:
        device = getattr(msg.body, "device", None)
        if msg.node is not None and device and self.bus.subscribers:
            self.mark(msg.node, device, whole=True)

    def changes_middleware(self):  # type: ignore[no-untyped-def]
        """The API's own changes that a tile shows (a spool loaded, a device renamed): the panel refetches."""
        @web.middleware
        async def reload_on_change(request: web.Request,
                                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                                   ) -> web.StreamResponse:
            response = await handler(request)
            if request.method not in ("GET", "HEAD", "OPTIONS") and response.status < 300:
                parts = request.path.split("/")
                if len(parts) > 3 and parts[1:3] == ["api", "v1"] and parts[3] in RELOADING:
                    self.reload()
            return response

        return reload_on_change
