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
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from pydantic import TypeAdapter

from protocol import codec, topics
from protocol.codec import ProtocolError

from .fleet import Fleet
from .ingest import Ingest
from .live import Bus
from .openapi import RouteTable
from .schemas import Device

log = structlog.get_logger("farmhand.hub.tiles")

TOPIC = "tiles"
# API changes to these resources can change what a tile shows (a spool loaded, a device renamed).
RELOADING = frozenset({"devices", "spools", "filaments", "nodes"})
Handle = Callable[[str, bytes, int], Awaitable[None]]
DEVICES = TypeAdapter(list[Device])


class TileFeed:
    def __init__(self, bus: Bus, fleet: Fleet, interval_s: float = 0.1) -> None:
        self.bus = bus
        self.fleet = fleet
        self.interval_s = interval_s
        self._dirty: dict[tuple[str, str], bool] = {}  # (node, device) -> status changed (send the whole snapshot)
        self._reload = False
        self._timer: asyncio.TimerHandle | None = None
        self.flushes = 0

    def ops(self) -> RouteTable:
        t = RouteTable()
        t.add("GET", "/api/v1/tiles", self.list_tiles, tags=("live",),
              summary="Every device in one answer, for the farm grid (then subscribe to the live topic 'tiles')")
        return t

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
        items: list[dict[str, Any]] = []
        for (node, device), whole in dirty.items():
            try:
                item = self._item(node, device, whole)
            except Exception:
                log.warning("tile_failed", node=node, device=device, exc_info=True)
                continue
            if item is not None:
                items.append(item)
        if items or reload:
            self.flushes += 1
            self.bus.publish(TOPIC, None, {"devices": items, "reload": reload})

    def _item(self, node: str, device: str, whole: bool) -> dict[str, Any] | None:
        reading = self.fleet.latest_telemetry(node, device)
        if whole or reading is None:
            snapshot = self.fleet.device(node, device)
            item = snapshot.model_dump(mode="json") if snapshot is not None else None
        else:
            item = {"ref": f"{node}/{device}",
                    "temperatures": {k: v.model_dump() for k, v in reading.temperatures.items()}}
            if reading.progress is not None:  # a reading without one leaves the last known progress
                item["progress"] = reading.progress
        if item is not None and reading is not None and reading.remaining_s is not None:
            item["remaining_s"] = reading.remaining_s
        return item

    # ------------------------------------------------------------------ sources

    def watch_ingest(self, ingest: Ingest) -> None:
        handle: Handle = ingest.handle

        async def observed(topic: str, payload: bytes, qos: int) -> None:
            await handle(topic, payload, qos)
            if not self.bus.subscribers:
                return
            parsed = topics.parse(topic)
            if parsed is None or parsed.node is None or not payload:
                return
            if parsed.kind == "device_telemetry" and parsed.device:
                self.mark(parsed.node, parsed.device, whole=False)
            elif parsed.kind == "device_status" and parsed.device:
                self.mark(parsed.node, parsed.device, whole=True)
            elif parsed.kind == "node_event":
                device = _event_device(payload)
                if device:
                    self.mark(parsed.node, device, whole=True)  # a job started or ended there, a spool ran low
            elif parsed.kind == "node_state":
                self.reload()  # a birth or a death: devices came or went

        ingest.handle = observed  # type: ignore[method-assign]

    def watch_changes(self) -> None:
        """The API's own changes (announced on the bus with no key) that a tile shows."""
        publish = self.bus.publish

        def observed(topic: str, key: str | None, data: Any) -> None:
            publish(topic, key, data)
            if key is None and topic in RELOADING:
                self.reload()

        self.bus.publish = observed  # type: ignore[method-assign]


def _event_device(payload: bytes) -> str | None:
    try:
        return getattr(codec.decode(payload).body, "device", None)
    except ProtocolError:
        return None
