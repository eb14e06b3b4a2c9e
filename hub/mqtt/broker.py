"""An MQTT broker inside the hub process (amqtt), for a farm with no Mosquitto.

Used when ``[mqtt] url`` is unset. It listens on ``embedded_host`` only
(127.0.0.1 by default), so it accepts every client without a password.
"""

from __future__ import annotations

import ipaddress

import structlog
from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

log = structlog.get_logger("farmhand.hub.broker")


class OpenAuth(BaseAuthPlugin):
    """Accept every client *as itself*.

    amqtt's own anonymous plugin marks clients anonymous, and amqtt then drops
    their persistent sessions and queued QoS 1 messages — the very thing the
    hub and the agents rely on across a disconnect.
    """

    async def authenticate(self, *, session: Session) -> bool:  # noqa: ARG002 - amqtt's signature
        return True


class _Broker(Broker):
    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int],
                                                          session: Session) -> None:
        # amqtt (0.12) replays, to each client that connects, the retained messages
        # matching *every* client's filters: an agent would get other nodes' states
        # on its command handler. Replay only for the client's own subscriptions.
        subscribers = self._subscriptions.get(subscription[0], [])
        if any(s.client_id == session.client_id for s, _ in subscribers):
            await super()._publish_retained_messages_for_subscription(subscription, session)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name, or "" (every interface)


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"mqtt://{host}:{self.port}"

    async def start(self) -> None:
        broker = _Broker({
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {f"{OpenAuth.__module__}.{OpenAuth.__qualname__}": {}},
        })
        await broker.start()
        self._broker = broker
        if self.port == 0:
            # amqtt has no public way to report the port it bound; its listener holds it.
            server = broker._servers["default"].instance  # noqa: SLF001
            self.port = server.sockets[0].getsockname()[1]
        log.info("embedded_broker_started", url=self.url)
        if not _loopback(self.host):
            log.warning("embedded_broker_open_to_the_network", bind=self.host,
                        why="it takes every client without a login: anyone who reaches it can command the "
                            "printers; on a farm network use Mosquitto with systemd/mosquitto-farmhand.conf")

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
