"""``Ops``: keeping the hub healthy: retention of logs, operators' alerts and the health report."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from hub.api import Op, respond
from hub.component import Component
from hub.config import RetentionConfig
from hub.store import Store

from .alerts import Alerts
from .health import Health
from .retention import Retention
from .tables import TABLES


class Ops(Component):
    name = "ops"
    tables = TABLES

    def __init__(self, config: RetentionConfig, store: Store, health: Callable[[], Health]) -> None:
        """``health``: the hub's report (the hub alone sees every component's counters)."""
        self.retention = Retention(store, config)
        self.alerts = Alerts(store)
        self.health = health

    def ops(self) -> list[Op]:
        return [Op("GET", "/healthz", self.get_health, response=Health, summary="Liveness and counters"),
                *self.alerts.ops()]

    async def get_health(self, request: web.Request) -> web.Response:
        return respond(self.health())

    async def start(self) -> None:
        self.run_loop(self.retention.run(), "retention")

    async def stop(self) -> None:
        await self.stop_loops()

    def counters(self) -> dict[str, dict[str, int]]:
        return {"retention_deleted": dict(self.retention.deleted)}
