"""``Mqtt``: the broker connection (or the embedded broker), the hub's presence, ingest and command outbox."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata

import structlog

from protocol import codec, topics
from protocol.messages import HubState
from protocol.mqtt import MqttSession, Will, loggable_url

from hub.component import Addresses, Component
from hub.config import HubConfig
from hub.store import Store

from .broker import EmbeddedBroker
from .confirm import EventConfirmations
from .ingest import Ingest
from .link import MqttLink
from .outbox import CommandOutbox
from .rebirth import RebirthRequests
from .tables import TABLES


log = structlog.get_logger("farmhand.hub")


def _version() -> str:
    try:
        return metadata.version("farmhand")
    except metadata.PackageNotFoundError:
        return ""


class Mqtt(Component):
    name = "mqtt"
    tables = TABLES

    def __init__(self, config: HubConfig, store: Store, link: MqttLink, addresses: Addresses) -> None:
        self.config = config
        self.link = link
        self.addresses = addresses
        self.outbox = CommandOutbox(store, config.hub_id, link)
        self.confirmations = EventConfirmations(config.hub_id, link)
        self.ingest = Ingest(store, self.outbox, self.confirmations)
        self.rebirths = RebirthRequests(config.hub_id, link)
        self.url = ""
        self._broker: EmbeddedBroker | None = None
        self._on_connect: list[Callable[[], object]] = []

    def on_connect(self, hook: Callable[[], object]) -> None:
        """``hook`` runs on every (re)connect, before pending commands are re-sent (refresh deadlines first)."""
        self._on_connect.append(hook)

    async def start(self) -> None:
        cfg = self.config
        if cfg.mqtt.url is None:
            self._broker = EmbeddedBroker(cfg.mqtt.embedded_host, cfg.mqtt.embedded_port)
            await self._broker.start()
            self.url = self._broker.url
        else:
            self.url = cfg.mqtt.url
        session = MqttSession(
            self.url,
            f"farmhand-hub-{cfg.hub_id}",
            receive=self.ingest.receive,
            subscriptions=topics.HUB_SUBSCRIPTIONS,
            on_connect=self._connected,
            will=Will(topics.hub_state(), self._hub_state(online=False)),
            persistent=True,
            ca_file=cfg.mqtt.ca_file,
        )
        self.link.attach(session)
        session.start()
        try:
            await session.wait_connected(timeout=5.0)
        except TimeoutError:
            # Serve HTTP anyway; jobs queue up and the session keeps trying.
            log.warning("hub_started_without_broker", broker=loggable_url(self.url))

    async def stop(self) -> None:
        await self.ingest.stop()
        self.confirmations.flush()
        self.confirmations.cancel()
        session = self.link.session
        if session is not None:
            await session.stop(farewell=[(topics.hub_state(), self._hub_state(online=False), 1, True)])
            self.link.attach(None)
        if self._broker is not None:
            await self._broker.stop()
            self._broker = None

    def _hub_state(self, online: bool) -> bytes:
        body = HubState(online=online, version=_version(), http_url=self.addresses.public_url if online else None)
        return codec.encode(codec.make(self.config.hub_id, body))

    async def _connected(self) -> None:
        self.link.publish(topics.hub_state(), self._hub_state(online=True), qos=1, retain=True)
        # Commands the agents have not answered go out again, with the same ids.
        for hook in self._on_connect:
            hook()
        resent = self.outbox.resend_pending()
        self.confirmations.flush_soon()
        self.ingest.reschedule()
        log.info("hub_online", broker=loggable_url(self.url), commands_resent=resent)

    def counters(self) -> dict[str, dict[str, int]]:
        return {"ingest": {**self.ingest.counters(), "rebirths_requested": self.rebirths.requested},
                "commands": self.outbox.counters()}

