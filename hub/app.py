"""``Hub``: builds the hub's parts, starts them in order and stops them in reverse.

Start order: database → HTTP (its bound address is the default public URL put
into start commands) → broker (when embedded) → MQTT session → scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from importlib import metadata

import structlog
from aiohttp import web

from protocol import codec, topics
from protocol.messages import HubState
from protocol.mqtt import MqttSession, Will, loggable_url

from .api import HttpApi
from .backup.service import Backups  # export-backup
from .broker import EmbeddedBroker
from .commands import Outbox
from .alerting.component import Alerting
from .config import HubConfig
from .documents.component import Documents
from .export.service import Export  # export-backup
from .farm import FarmServices
from .files import FileStore
from .fleet import Fleet
from .ingest import Ingest
from .jobs import JobService
from .lifecycle import JobTracker
from .openapi import RouteTable
from .parser_errors import ProblemAppRunner
from .reconcile import Reconciler
from .requests import ScriptRequests
from .retention import Retention
from .render.farm import RenderFarm
from .scheduler import Scheduler
from .schemas import Health
from .store import Store
from .surface import Surface

log = structlog.get_logger("farmhand.hub")

WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def _version() -> str:
    try:
        return metadata.version("farmhand")
    except metadata.PackageNotFoundError:
        return ""


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Hub:
    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.http_url = ""
        self.public_url = ""
        self.mqtt_url = ""
        self.store: Store | None = None
        self._runner: web.AppRunner | None = None
        self._broker: EmbeddedBroker | None = None
        self._session: MqttSession | None = None
        self._scheduler_task: asyncio.Task[None] | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self.render: RenderFarm | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        cfg = self.config
        self.store = store = Store(cfg.data_dir)
        self.files = FileStore(cfg.data_dir / "files", store, cfg.max_upload_mb)
        self.outbox = Outbox(store, cfg.hub_id)
        self.scheduler = Scheduler(store, self.outbox, ack_timeout_s=cfg.ack_timeout_s,
                                   file_url=lambda sha: f"{self.public_url}/api/v1/files/{sha}",
                                   connected=lambda: self._session is not None and self._session.connected)
        self.jobs = JobService(store, self.outbox, on_change=self.scheduler.wake)
        self.fleet = Fleet(store, cfg.telemetry_history_interval_s)
        self.retention = Retention(store, cfg.retention)
        self.requests = ScriptRequests(self.jobs, cfg.hub_id)
        self.render = RenderFarm(store, self.files, self.outbox, cfg.render, ack_timeout_s=cfg.ack_timeout_s,
                                 public_url=lambda: self.public_url,
                                 connected=lambda: self._session is not None and self._session.connected)
        self.reconciler = Reconciler(store, self.outbox, cfg.jobs)
        self.scheduler.before_pass.append(self.reconciler.overdue_offline)
        self.ingest = Ingest(store, self.fleet, JobTracker(self.outbox), self.outbox, self.requests,
                             self._reschedule, self.reconciler)
        self.ingest.render = self.render.tracker

        api = HttpApi(self.jobs, self.files, self.fleet, self.health)
        self.surface = Surface(self, api.table())  # auth, live updates, OpenAPI, panel
        render_routes = self.render.table()
        self.surface.table.extend(render_routes.ops)  # so the OpenAPI document lists them
        app = api.app()
        app.add_routes(render_routes.routes())
        # export-backup: the outbound event log's consumers and backups, each one component.
        self.export = Export(store, cfg.export)
        self.backups = Backups(store, self.files, cfg.backup, cfg.data_dir, cfg.hub_id)
        for component in (self.export, self.backups):
            routes = component.table()
            self.surface.table.extend(routes.ops)
            app.add_routes(routes.routes())
        self.farm = FarmServices(store, self.files, self.jobs, self.scheduler)
        self.farm.extend(app, self.surface.table)  # files' analysis, constrained queue, stock, costs, orders
        api.screen = self.farm.screen_upload
        # Paper (issue 22): quotes, travellers, labels and exports.
        self.documents = Documents(store, self.farm.costs, self.farm.orders, self.farm.analyses, self.farm.reports,
                                   cfg.documents, public_url=lambda: self.public_url)
        # Threshold alerts (issue 22): rules, history, acknowledgements, notification channels.
        self.alerting = Alerting(store, self.fleet, cfg.alerting, cfg.hub_id, publish=self._publish)
        paper = RouteTable(self.documents.ops() + self.alerting.ops())
        self.surface.table.extend(paper.ops)
        app.add_routes(paper.routes())
        self._runner = ProblemAppRunner(self.surface.install(app), access_log=None)
        await self._runner.setup()
        tls = cfg.http.tls()
        site = web.TCPSite(self._runner, cfg.http.host, cfg.http.port, ssl_context=tls)
        await site.start()
        port = self._runner.addresses[0][1]
        wildcard = cfg.http.host in WILDCARD_HOSTS
        scheme = "https" if tls else "http"
        self.http_url = f"{scheme}://{_url_host('127.0.0.1' if wildcard else cfg.http.host)}:{port}"
        self.public_url = (cfg.public_url or (f"{scheme}://{socket.getfqdn()}:{port}" if wildcard else self.http_url)
                           ).rstrip("/")

        if cfg.mqtt.url is None:
            self._broker = EmbeddedBroker(cfg.mqtt.embedded_host, cfg.mqtt.embedded_port)
            await self._broker.start()
            self.mqtt_url = self._broker.url
        else:
            self.mqtt_url = cfg.mqtt.url
        self._session = MqttSession(
            self.mqtt_url,
            f"farmhand-hub-{cfg.hub_id}",
            on_message=self.ingest.handle,
            subscriptions=topics.HUB_SUBSCRIPTIONS,
            on_connect=self._on_connect,
            will=Will(topics.hub_state(), self._hub_state(online=False)),
            persistent=True,
            ca_file=cfg.mqtt.ca_file,
        )
        self.outbox.publisher = self._session
        self.requests.publish = self._session.publish
        self._session.start()
        try:
            await self._session.wait_connected(timeout=5.0)
        except TimeoutError:
            # Serve HTTP anyway; jobs queue up and the session keeps trying.
            log.warning("hub_started_without_broker", broker=loggable_url(self.mqtt_url))
        self._scheduler_task = asyncio.create_task(self.scheduler.run(), name="hub:scheduler")
        self._retention_task = asyncio.create_task(self.retention.run(), name="hub:retention")
        self.render.start()
        self.alerting.start()
        self.export.start()  # export-backup
        self.backups.start()  # export-backup
        log.info("hub_started", http=self.http_url, public_url=self.public_url, mqtt=loggable_url(self.mqtt_url),
                 data_dir=str(cfg.data_dir), schema_version=store.schema_version)

    async def stop(self) -> None:
        for component in (getattr(self, "export", None), getattr(self, "backups", None)):  # export-backup
            if component is not None:
                await component.stop()
        if self.render is not None:
            await self.render.stop()
        if getattr(self, "alerting", None) is not None:
            await self.alerting.stop()
        for task in (self._scheduler_task, self._retention_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._scheduler_task = self._retention_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if getattr(self, "farm", None) is not None:
            await self.farm.stop()
        if self._session is not None:
            await self._session.stop(farewell=[(topics.hub_state(), self._hub_state(online=False), 1, True)])
            self._session = None
        if self._broker is not None:
            await self._broker.stop()
            self._broker = None
        if self.store is not None:
            self.store.close()
            self.store = None
        log.info("hub_stopped", hub_id=self.config.hub_id)

    # ------------------------------------------------------------------ MQTT presence

    def _hub_state(self, online: bool) -> bytes:
        body = HubState(online=online, version=_version(), http_url=self.public_url if online else None)
        return codec.encode(codec.make(self.config.hub_id, body))

    async def _on_connect(self) -> None:
        assert self._session is not None
        self._session.publish(topics.hub_state(), self._hub_state(online=True), qos=1, retain=True)
        # Commands the agents have not answered go out again, with the same ids.
        self.scheduler.refresh_deadlines()
        self.render.dispatcher.refresh_deadlines()
        resent = self.outbox.resend_pending()
        self._reschedule()
        log.info("hub_online", broker=loggable_url(self.mqtt_url), commands_resent=resent)

    async def _publish(self, topic: str, payload: bytes) -> None:
        """QoS 1, returning once the broker has it (alert deliveries are recorded sent only then)."""
        if self._session is None:
            raise ConnectionError("the hub has no MQTT session")
        await asyncio.wait_for(self._session.publish_confirmed(topic, payload), timeout=10)

    def _reschedule(self) -> None:
        self.scheduler.wake()
        self.render.wake()

    # ------------------------------------------------------------------ health

    def health(self) -> Health:
        connected = self._session is not None and self._session.connected
        return Health(
            status="ok" if connected else "degraded",
            hub_id=self.config.hub_id,
            mqtt_connected=connected,
            schema_version=self.store.schema_version if self.store else 0,
            counters={
                "ingest": self.ingest.counters(),
                "requests": self.requests.counters(),
                "commands": self.outbox.counters(),
                "scheduler": self.scheduler.counters(),
                "render": self.render.counters() if self.render else {},
                "retention_deleted": dict(self.retention.deleted),
                "export": self.export.counters(),  # export-backup
            },
        )
