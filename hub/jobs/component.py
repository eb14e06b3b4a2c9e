"""``Jobs``: print jobs from submission to the end, over HTTP and over MQTT."""

from __future__ import annotations

from collections.abc import Callable

from protocol.messages import CommandAck, NodeState, Request

from hub.api import Op
from hub.component import Addresses, Component
from hub.config import HubConfig
from hub.files import Files
from hub.mqtt import Mqtt, MqttLink
from hub.store import Store

from .api import JobsApi
from .mqtt_api import ScriptRequests
from .queue import PrintQueue
from .reconcile import Reconciler
from .scheduler import Scheduler
from .service import JobService
from .tables import TABLES
from .tracker import JobEvent, PrintJobTracker



class Jobs(Component):
    name = "jobs"
    tables = TABLES

    def __init__(self, config: HubConfig, store: Store, link: MqttLink, mqtt: Mqtt, addresses: Addresses,
                 files: Files) -> None:
        outbox = mqtt.outbox
        self._bookkeeping: list[Callable[[], object]] = []
        self.scheduler = Scheduler(store, outbox, ack_timeout_s=config.ack_timeout_s, file_url=addresses.file_url,
                                   connected=lambda: link.connected, before_pass=self._before_pass)
        self.service = JobService(store, outbox, on_change=self.scheduler.wake)
        self.queue = PrintQueue(store, self.service, files.analyses, self.scheduler.wake)
        self.tracker = PrintJobTracker(outbox)
        self.requests = ScriptRequests(self.service, config.hub_id, link)
        self.reconciler = Reconciler(store, outbox, config.jobs, mqtt.rebirths)
        # A CommandAck goes to the print tracker first: it records the ack for everyone after it.
        mqtt.ingest.subscribe(JobEvent | CommandAck, self.tracker.apply)
        mqtt.ingest.subscribe(Request, self.requests.handle)
        mqtt.ingest.subscribe(NodeState, self.reconciler.on_birth)
        mqtt.ingest.watch_seq(self.reconciler)
        mqtt.ingest.on_reschedule(self.scheduler.wake)
        mqtt.on_connect(self.scheduler.refresh_deadlines)
        self._api = JobsApi(self.service, self.queue)

    def before_scheduling(self, step: Callable[[], object]) -> None:
        """``step`` runs before each scheduler pass: after overdue nodes' jobs are interrupted, ahead of the
        retry of failed jobs (filament is booked first)."""
        self._bookkeeping.append(step)

    def _before_pass(self) -> None:
        self.reconciler.overdue_offline()
        for step in self._bookkeeping:
            step()
        self.queue.retry_failed()

    def ops(self) -> list[Op]:
        return self._api.ops()

    async def start(self) -> None:
        self.run_loop(self.scheduler.run(), "scheduler")

    async def stop(self) -> None:
        await self.stop_loops()

    def counters(self) -> dict[str, dict[str, int]]:
        return {"ingest": {"stray_events": self.tracker.stray,
                           "acks_for_unknown_commands": self.tracker.unknown_commands, **self.reconciler.counters()},
                "requests": self.requests.counters(), "scheduler": self.scheduler.counters()}
