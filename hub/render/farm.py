"""``RenderFarm``: the render parts built together, and the few hooks the hub wires in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from hub.mqtt.outbox import Outbox
from hub.files.storage import FileStore
from hub.api.routes import RouteTable
from hub.store import Store
from .api import RenderApi
from .config import RenderConfig
from .costs import RenderCosting
from .dispatch import RenderDispatcher
from .events import RenderTracker
from .outputs import RenderOutputs
from .service import RenderJobService
from .tasks import TaskBook


class RenderFarm:
    def __init__(self, store: Store, files: FileStore, outbox: Outbox, config: RenderConfig, *,
                 ack_timeout_s: float, public_url: Callable[[], str], connected: Callable[[], bool]) -> None:
        self.book = TaskBook(outbox, config)
        self.dispatcher = RenderDispatcher(
            store, outbox, self.book, ack_timeout_s=ack_timeout_s,
            blend_url=lambda sha: f"{public_url()}/api/v1/files/{sha}",
            upload_url=lambda: f"{public_url()}/api/v1/render/outputs", connected=connected)
        self.tracker = RenderTracker(outbox, self.book)
        self.outputs = RenderOutputs(store, files)
        self.jobs = RenderJobService(store, outbox, self.book, config, files.path, on_change=self.wake)
        self.costing = RenderCosting(store, config.costs)
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self.dispatcher.wake()

    def table(self) -> RouteTable:
        return RenderApi(self.jobs, self.outputs, self.costing).table()

    def start(self) -> None:
        self._task = asyncio.create_task(self.dispatcher.run(), name="hub:render-dispatch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def counters(self) -> dict[str, int]:
        return {**self.dispatcher.counters(), "stray_events": self.tracker.stray,
                "outputs_received": self.outputs.received, "outputs_refused": self.outputs.refused}
