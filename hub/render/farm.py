"""``RenderFarm``: render jobs split into frame-range tasks for the farm's Blender nodes."""

from __future__ import annotations

from protocol.messages import CommandAck

from hub.api import Op
from hub.bus import Bus
from hub.component import Addresses, Component
from hub.config import RenderConfig
from hub.files import Files
from hub.mqtt import Mqtt, MqttLink
from hub.store import Store

from .api import RenderApi
from .costs import RenderCosting
from .dispatch import RenderDispatcher
from .events import RenderEvent, RenderTracker
from .frames import RenderFrames
from .outputs import RenderOutputs
from .service import RenderJobService
from .tables import TABLES
from .tasks import TaskBook


class RenderFarm(Component):
    name = "render"
    tables = TABLES

    def __init__(self, config: RenderConfig, store: Store, link: MqttLink, mqtt: Mqtt, addresses: Addresses,
                 files: Files, bus: Bus, *, ack_timeout_s: float) -> None:
        outbox = mqtt.outbox
        self.book = TaskBook(outbox, config)
        self.dispatcher = RenderDispatcher(
            store, outbox, self.book, ack_timeout_s=ack_timeout_s, blend_url=addresses.file_url,
            upload_url=lambda: f"{addresses.public_url}/api/v1/render/outputs", connected=lambda: link.connected)
        self.tracker = RenderTracker(outbox, self.book)
        self.outputs = RenderOutputs(store, files.store)
        self.jobs = RenderJobService(store, outbox, self.book, config, files.store.path, on_change=self.wake)
        self.costing = RenderCosting(store, config.costs)
        self.frames = RenderFrames(store, files.store, bus, mqtt.ingest)
        # After the print tracker: it has recorded the ack by the time this one reads it.
        mqtt.ingest.subscribe(RenderEvent | CommandAck, self.tracker.apply)
        mqtt.ingest.on_reschedule(self.wake)
        mqtt.on_connect(self.dispatcher.refresh_deadlines)
        self._api = RenderApi(self.jobs, self.outputs, self.costing)

    def wake(self) -> None:
        self.dispatcher.wake()

    def ops(self) -> list[Op]:
        return [*self._api.ops(), *self.frames.ops()]

    async def start(self) -> None:
        self.run_loop(self.dispatcher.run(), "render-dispatch")

    async def stop(self) -> None:
        await self.stop_loops()

    def counters(self) -> dict[str, dict[str, int]]:
        return {"render": {**self.dispatcher.counters(), "stray_events": self.tracker.stray,
                           "outputs_received": self.outputs.received, "outputs_refused": self.outputs.refused}}
