"""``Export``: the outbound event log's front door — pull API, webhooks and (when configured) Redis Streams.

The log itself fills from database triggers (``migration.py``); this component only reads it, so the
job, order, stock, alert and render code know nothing of export.
"""

from __future__ import annotations

import asyncio

import structlog

from hub.api import Op
from hub.component import Component, Tables
from hub.store import Store
from hub.tasks import stop_tasks

from .api import ExportApi
from .config import ExportConfig
from .delivery import Deliverer
from .event_log import EventLog
from .migration import OUTBOUND_EVENTS_MIGRATION
from .redis_stream import RedisExporter
from .schemas import ExportStatus
from .webhooks import Webhooks

log = structlog.get_logger("farmhand.hub.export")

PRUNE_INTERVAL_S = 3600.0


class Export(Component):
    name = "export"
    tables = (Tables(6, OUTBOUND_EVENTS_MIGRATION),)

    def __init__(self, store: Store, config: ExportConfig) -> None:
        self.config = config
        self.events = EventLog(store)
        self.webhooks = Webhooks(store, self.events, on_change=lambda webhook_id: self.deliverer.restart(webhook_id))
        self.deliverer = Deliverer(self.webhooks, self.events, config.webhooks)
        self.redis = RedisExporter(self.events, config.redis) if config.redis.url else None
        self._tasks: list[asyncio.Task[None]] = []

    def ops(self) -> list[Op]:
        return ExportApi(self.events, self.webhooks, self.status).table().ops

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self.deliverer.run(), name="hub:webhooks"),
                       asyncio.create_task(self._prune(), name="hub:export-prune")]
        if self.redis is not None:
            self._tasks.append(asyncio.create_task(self.redis.run(), name="hub:export-redis"))

    async def stop(self) -> None:
        if self.redis is not None:
            self.redis.stopping = True
        await stop_tasks(*self._tasks)
        self._tasks = []
        if self.redis is not None:
            await self.redis.close()

    async def _prune(self) -> None:
        while True:
            try:
                gone = self.events.prune(self.config.keep_days)
                if gone:
                    log.info("export_events_pruned", deleted=gone)
            except Exception:
                log.exception("export_prune_failed")
            await asyncio.sleep(PRUNE_INTERVAL_S)

    def status(self) -> ExportStatus:
        return ExportStatus(last_event_id=self.events.last_id(),
                            redis=self.redis.counters() if self.redis else None, webhooks=self.deliverer.counters())

    def counters(self) -> dict[str, dict[str, int]]:
        counts = dict(self.deliverer.counters())
        if self.redis is not None:
            counts |= {"redis_exported": self.redis.exported, "redis_failures": self.redis.failures}
        return {"export": counts}
