"""``Hub``: the hub's components, built in one list, started in its order and stopped in reverse.

Web binds HTTP first (its address is the default public URL put into the
hub's presence message and into start commands), then the MQTT session opens,
then every other component starts its background work. See ``hub/README.md``
for what each component owns.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import structlog

from protocol.mqtt import MqttSession, loggable_url

from hub.access import Access
from hub.alerting import Alerting
from hub.backup import Backups
from hub.bus import Bus
from hub.clock import Clock, SystemClock
from hub.component import Addresses, Component
from hub.config import HubConfig
from hub.documents import Documents
from hub.export import Export
from hub.files import Files
from hub.fleet import Fleet
from hub.jobs import Jobs, Scheduler
from hub.live import Live
from hub.metrics import Metrics
from hub.mqtt import CommandOutbox, Ingest, Mqtt, MqttLink
from hub.ops import Health, Ops
from hub.render import RenderFarm
from hub.shop import Shop
from hub.slicing import Slicing
from hub.store import Store
from hub.web import Web

log = structlog.get_logger("farmhand.hub")

# The hub, in start order (stopped in reverse). A feature is a package and its line here and in ``_build``.
COMPONENTS: tuple[type[Component], ...] = (Web, Mqtt, Files, Access, Jobs, Fleet, Slicing, Shop, RenderFarm, Live, Ops,
                                           Export, Backups, Documents, Alerting, Metrics)


class Hub:
    def __init__(self, config: HubConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()  # the time of day scheduled work runs at (tests pass one they move)
        self.addresses = Addresses()
        self.store: Store | None = None
        self.components: list[Component] = []
        self._started: list[Component] = []

    def _build(self, store: Store) -> list[Component]:
        """The hub's components in start order; each receives what it uses in its constructor."""
        cfg = self.config
        link, bus, addresses = MqttLink(), Bus(), self.addresses
        web = Web(cfg.http, cfg.public_url, addresses, lambda: self.components)
        mqtt = Mqtt(cfg, store, link, addresses)
        files = Files(cfg, store)
        access = Access(cfg.auth, store)
        jobs = Jobs(cfg, store, link, mqtt, addresses, files)
        fleet = Fleet(cfg, store, mqtt, bus, jobs)
        slicing = Slicing(cfg.data_dir, store, files)
        shop = Shop(store, files, jobs, slicing)
        render = RenderFarm(cfg.render, store, link, mqtt, addresses, files, bus, ack_timeout_s=cfg.ack_timeout_s)
        live = Live(bus, mqtt, fleet, jobs)
        ops = Ops(cfg.retention, store, self.health)
        export = Export(store, cfg.export)
        backups = Backups(store, files.store, cfg.backup, cfg.data_dir, cfg.hub_id, self.clock)
        documents = Documents(store, shop.costs, shop.orders, files.analyses, shop.reports, cfg.documents,
                              public_url=lambda: addresses.public_url)
        alerting = Alerting(store, fleet, cfg.alerting, cfg.hub_id, publish=link.publish_confirmed)
        metrics = Metrics(mqtt, fleet, jobs)
        built: list[Component] = [web, mqtt, files, access, jobs, fleet, slicing, shop, render, live, ops, export,
                                  backups, documents, alerting, metrics]
        assert [type(c) for c in built] == list(COMPONENTS), "build them in COMPONENTS' order"
        return built

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self.store = store = Store(self.config.data_dir)
        self.components = self._build(store)
        for component in self.components:
            await component.start()
            self._started.append(component)
        log.info("hub_started", http=self.http_url, public_url=self.public_url, mqtt=loggable_url(self.mqtt_url),
                 data_dir=str(self.config.data_dir), schema_version=store.schema_version)

    async def stop(self) -> None:
        while self._started:
            await self._started.pop().stop()
        for component in self.components:
            if component not in self._started:
                await component.stop()  # built, maybe started part-way: each stop is safe to call
        self.components = []
        if self.store is not None:
            self.store.close()
            self.store = None
        log.info("hub_stopped", hub_id=self.config.hub_id)

    # ------------------------------------------------------------------ health

    def health(self) -> Health:
        mqtt = self._component(Mqtt)
        connected = mqtt is not None and mqtt.link.connected
        counters: dict[str, dict[str, int]] = {}
        for component in self.components:
            for section, values in component.counters().items():
                counters.setdefault(section, {}).update(values)
        return Health(status="ok" if connected else "degraded", hub_id=self.config.hub_id, mqtt_connected=connected,
                      schema_version=self.store.schema_version if self.store else 0, counters=counters)

    # ------------------------------------------------------------------ for operators' tools, tests and benchmarks

    def _component(self, kind: type[Any]) -> Any:
        return next((c for c in self.components if isinstance(c, kind)), None)

    @property
    def http_url(self) -> str:
        return self.addresses.http_url

    @property
    def public_url(self) -> str:
        return self.addresses.public_url

    @property
    def mqtt_url(self) -> str:
        mqtt = self._component(Mqtt)
        return mqtt.url if mqtt is not None else ""

    @property
    def session(self) -> MqttSession | None:
        mqtt = self._component(Mqtt)
        return mqtt.link.session if mqtt is not None else None

    @property
    def fleet(self) -> Fleet | None:
        return self._component(Fleet)

    @property
    def ingest(self) -> Ingest | None:
        mqtt = self._component(Mqtt)
        return mqtt.ingest if mqtt is not None else None

    @property
    def outbox(self) -> CommandOutbox | None:
        mqtt = self._component(Mqtt)
        return mqtt.outbox if mqtt is not None else None

    @property
    def scheduler(self) -> Scheduler | None:
        jobs = self._component(Jobs)
        return jobs.scheduler if jobs is not None else None

    @property
    def export(self) -> Export | None:
        return self._component(Export)

    @property
    def backups(self) -> Backups | None:
        return self._component(Backups)

    @property
    def documents(self) -> Documents | None:
        return self._component(Documents)

    @property
    def alerting(self) -> Alerting | None:
        return self._component(Alerting)

    @property
    def render(self) -> RenderFarm | None:
        return self._component(RenderFarm)

    @property
    def surface(self) -> SimpleNamespace:
        """What sat on the panel's side before the components: the console, accounts and live bus counters."""
        live, fleet, access = self._component(Live), self._component(Fleet), self._component(Access)
        return SimpleNamespace(console=fleet.console, accounts=access.accounts, counters=live.bus.counters)

    @property
    def _runner(self) -> Any:
        return self._component(Web).runner
