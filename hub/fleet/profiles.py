"""What the hub knows about a printer beyond what its agent reports: nozzle, tags, whether it
ejects parts by itself, and the operator's "bed is clear" after a print.

A printer with a profile and no automatic ejection waits after every print
until ``POST …/bed-cleared`` (see ``snapshot.FREE_PRINTERS``). A printer no one
gave a profile behaves as before profiles existed: it takes the next job.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hub.api import Op, body, respond
from hub.store import Store, utcnow

log = structlog.get_logger("farmhand.hub.printers")


class DeviceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nozzle_diameter: float | None = Field(None, gt=0, le=5, description="default: the machine model's")
    tags: list[str] = Field(default_factory=list, max_length=50, description="groups a job can ask for")
    auto_eject: bool = Field(False, description="clears its own bed; never waits for an operator")


class DeviceProfileView(DeviceProfile):
    device: str
    awaiting_bed_clear: bool
    bed_cleared_at: str | None


class DeviceProfiles:
    def __init__(self, store: Store, on_change: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.on_change = on_change

    def _ref(self, request: web.Request) -> tuple[str, str]:
        node, device = request.match_info["node"], request.match_info["device"]
        if self.store.one("SELECT 1 FROM devices WHERE node = ? AND id = ?", (node, device)) is None:
            raise web.HTTPNotFound(text=f"no device {node}/{device}; GET /api/v1/devices lists the known ones")
        return node, device

    def view(self, node: str, device: str) -> DeviceProfileView:
        r = self.store.one("SELECT * FROM device_profiles WHERE node = ? AND device = ?", (node, device)) or {}
        last_end = self.store.one(
            "SELECT MAX(finished_at) AS at FROM jobs WHERE node = ? AND device = ? AND started_at IS NOT NULL",
            (node, device))
        ended = max((last_end or {}).get("at") or "", r.get("last_print_at") or "")
        awaiting = bool(r) and not r["auto_eject"] and ended > (r["bed_cleared_at"] or "")
        return DeviceProfileView(
            device=f"{node}/{device}", nozzle_diameter=r.get("nozzle_diameter"),
            tags=json.loads(r["tags"]) if r else [], auto_eject=bool(r.get("auto_eject", False)),
            awaiting_bed_clear=awaiting, bed_cleared_at=r.get("bed_cleared_at"))

    def set_profile(self, node: str, device: str, p: DeviceProfile) -> DeviceProfileView:
        self.store.db.execute(
            "INSERT INTO device_profiles (node, device, nozzle_diameter, tags, auto_eject, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (node, device) DO UPDATE SET"
            " nozzle_diameter = excluded.nozzle_diameter, tags = excluded.tags, auto_eject = excluded.auto_eject,"
            " updated_at = excluded.updated_at",
            (node, device, p.nozzle_diameter, json.dumps(sorted(set(p.tags))), int(p.auto_eject), utcnow()))
        self.on_change()
        return self.view(node, device)

    def bed_cleared(self, node: str, device: str) -> DeviceProfileView:
        now = utcnow()
        self.store.db.execute(
            "INSERT INTO device_profiles (node, device, bed_cleared_at, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (node, device) DO UPDATE SET bed_cleared_at = excluded.bed_cleared_at,"
            " updated_at = excluded.updated_at", (node, device, now, now))
        log.info("bed_cleared", device=f"{node}/{device}")
        self.on_change()
        return self.view(node, device)

    def ops(self) -> list[Op]:
        base, tags = "/api/v1/devices/{node}/{device}", ("devices",)
        return [
            Op("GET", f"{base}/profile", self.get_profile, response=DeviceProfileView, tags=tags,
               summary="What the hub knows about the printer beyond its agent: nozzle, tags, ejection"),
            Op("PUT", f"{base}/profile", self.put_profile, body=DeviceProfile, response=DeviceProfileView, tags=tags,
               summary="Set the printer's profile"),
            Op("POST", f"{base}/bed-cleared", self.post_cleared, response=DeviceProfileView, tags=tags,
               summary="The operator cleared the bed: the printer may take the next job"),
        ]

    async def get_profile(self, request: web.Request) -> web.Response:
        return respond(self.view(*self._ref(request)))

    async def put_profile(self, request: web.Request) -> web.Response:
        ref = self._ref(request)
        return respond(self.set_profile(*ref, await body(request, DeviceProfile)))

    async def post_cleared(self, request: web.Request) -> web.Response:
        return respond(self.bed_cleared(*self._ref(request)))
