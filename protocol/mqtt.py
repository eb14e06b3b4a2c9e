"""One MQTT session over many connections, for the agent and the hub alike.

gmqtt speaks the protocol; this module owns the policy around it:

* reconnect with capped exponential backoff and full jitter (gmqtt's own
  reconnect uses a fixed delay, which makes a farm of agents hammer a broker
  that just came back in lock-step);
* a Last Will and a birth callback run on every connect;
* ``publish_confirmed`` returns a future that completes when the broker
  acknowledges a QoS 1 publish (a farewell, a test); the broker's PUBACK is
  not the receiver's, so the agent's event outbox waits for the hub's own
  confirmation instead (protocol/README.md, "Event delivery");
* ``publish_soon`` sends live readings in batches, ``BATCH_S`` apart, written to a corked socket: on a
  small or virtualised CPU a send that wakes the broker costs tens of microseconds, which an agent of 200
  printers paid 200 times a second for its readings alone (bench.network_printers);
* inbound QoS 1 messages are acknowledged only after the handler returns, so
  a receiver that persists in its handler never loses a message; a receiver
  that stores in batches (the hub's ingest) takes each message synchronously
  with an ``ack`` to call once it is stored (``receive=``), and no task is
  made per message.

Each connection gets a fresh gmqtt client: the durable state (spool, job
table) lives with the caller, never in a client object that a crash loses.
"""

from __future__ import annotations

import asyncio
import random
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import gmqtt
import structlog
from gmqtt.mqtt.constants import MQTTv311

from .gmqtt_client import AckTracker, SessionClient, corked

log = structlog.get_logger("farmhand.mqtt")

BATCH_S = 0.05
"""How long ``publish_soon`` holds a message for others to go out with it."""

MessageHandler = Callable[[str, bytes, int], Awaitable[None]]
Ack = Callable[[], None]
Receiver = Callable[[str, bytes, int, Ack | None], None]
"""Takes one message as it is read: ``(topic, payload, qos, ack)``; for QoS 1 ``ack`` is not None and
sends the broker its PUBACK: call it once the message is safe, after the receiver has returned."""


class NotConnected(ConnectionError):
    """Publishing needs a live connection; the caller keeps the message."""


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """``mqtt://user:pass@host:1883`` or ``mqtts://host`` (port 8883)."""
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "mqtts", "tcp"):
            raise ValueError(f"broker URL must start with mqtt:// or mqtts://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"broker URL has no host: {url!r}")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def loggable_url(url: str) -> str:
    """The broker URL without its password, for logs and screens."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def tls_context(ca_file: str | Path | None = None) -> ssl_module.SSLContext:
    """A client's TLS: certificates checked against ``ca_file`` (the farm's CA), or the system's CAs."""
    return ssl_module.create_default_context(cafile=str(ca_file) if ca_file else None)


def backoff_delay(attempt: int, initial: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff: uniform in [initial/2, min(cap, initial * 2**attempt)]."""
    ceiling = min(cap, initial * (2 ** min(attempt, 30)))
    floor = initial / 2
    return floor + rng() * max(0.0, ceiling - floor)


class MqttSession:
    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        on_message: MessageHandler | None = None,
        receive: Receiver | None = None,
        subscriptions: Sequence[tuple[str, int]] = (),
        on_connect: Callable[[], Awaitable[None]] | None = None,
        will: Will | None = None,
        persistent: bool = True,
        keepalive: int = 30,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        ca_file: str | Path | None = None,
    ) -> None:
        """Messages go to ``on_message`` (awaited, then acknowledged) or to ``receive`` (see ``Receiver``),
        exactly one of them. ``ca_file``: the CA an ``mqtts://`` broker's certificate must chain to
        (default: the system's)."""
        if (on_message is None) == (receive is None):
            raise TypeError("give exactly one of on_message and receive")
        self.address = BrokerAddress.parse(url)
        self._tls = tls_context(ca_file) if self.address.tls else None
        self.client_id = client_id
        self._on_message = on_message
        self._receive = receive
        self._subscriptions = list(subscriptions)
        self._on_connect = on_connect
        self._will = will
        self._persistent = persistent
        self._keepalive = keepalive
        self._backoff = (backoff_initial, backoff_max)
        self._client: SessionClient | None = None
        self._acks: AckTracker | None = None
        self._connected = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.connects = 0
        self.handler_errors = 0
        self._batch: list[tuple[str, bytes, int, bool]] = []
        self._batch_timer: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and self._client is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mqtt:{self.client_id}")

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def stop(self, farewell: Sequence[tuple[str, bytes, int, bool]] = ()) -> None:
        """Publish ``farewell`` messages (a clean offline state) and disconnect."""
        self._stopping = True
        self._wake.set()
        if self._batch_timer is not None:  # readings not yet sent are stale by now
            self._batch_timer.cancel()
            self._batch_timer, self._batch = None, []
        client = self._client
        if client is not None and self.connected:
            pending = [self.publish_confirmed(t, p, retain=r) if q else self.publish(t, p, 0, r)
                       for t, p, q, r in farewell]
            futures = [f for f in pending if f is not None]
            if futures:
                await asyncio.wait(futures, timeout=2.0)
            try:
                await asyncio.wait_for(client.disconnect(), 2.0)
            except (TimeoutError, OSError, ConnectionError):
                pass
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    # ---------------------------------------------------------------- publishing

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Fire and forget; raises NotConnected when no connection is up."""
        client = self._client
        if client is None or not self._connected.is_set():
            raise NotConnected(topic)
        client.publish(topic, payload, qos=qos, retain=retain)

    def publish_soon(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """``publish`` within ``BATCH_S``, together with whatever else is published meanwhile (live readings:
        they would cost a wake-up of the broker each). Raises NotConnected when no connection is up; a batch
        that finds the connection gone is dropped, as a reading published into a lost connection would be."""
        if self._client is None or not self._connected.is_set():
            raise NotConnected(topic)
        self._batch.append((topic, payload, qos, retain))
        if self._batch_timer is None:
            self._batch_timer = asyncio.get_running_loop().call_later(BATCH_S, self._send_batch)

    def _send_batch(self) -> None:
        self._batch_timer = None
        batch, self._batch = self._batch, []
        client = self._client
        if client is None or not self._connected.is_set():
            return
        with corked(client):
            for topic, payload, qos, retain in batch:
                client.publish(topic, payload, qos=qos, retain=retain)

    def publish_confirmed(self, topic: str, payload: bytes, retain: bool = False) -> asyncio.Future[None]:
        """QoS 1 publish; the future completes on PUBACK, fails if the connection drops first."""
        client, acks = self._client, self._acks
        if client is None or acks is None or not self._connected.is_set():
            raise NotConnected(topic)
        client.publish(topic, payload, qos=1, retain=retain)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        assert acks.last_mid is not None
        acks.waiters[acks.last_mid] = fut
        return fut

    # ---------------------------------------------------------------- the loop

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            lost = asyncio.Event()
            acks = AckTracker()
            will = (
                gmqtt.Message(self._will.topic, self._will.payload, qos=self._will.qos, retain=self._will.retain)
                if self._will
                else None
            )
            client = SessionClient(
                self.client_id,
                clean_session=not self._persistent,
                optimistic_acknowledgement=False,
                will_message=will,
                persistent_storage=acks,
                lost=lost,
                receive=None if self._receive is None else self._received,
            )
            client.on_message = self._dispatch if self._receive is None else self._received_qos0
            client.on_disconnect = lambda *_: lost.set()
            if self.address.username:
                client.set_auth_credentials(self.address.username, self.address.password)
            try:
                await asyncio.wait_for(
                    client.connect(
                        self.address.host,
                        self.address.port,
                        ssl=self._tls or False,
                        keepalive=self._keepalive,
                        version=MQTTv311,
                    ),
                    timeout=10,
                )
            except (OSError, TimeoutError, ConnectionError, gmqtt.mqtt.handler.MQTTConnectError) as exc:
                delay = backoff_delay(attempt, *self._backoff)
                attempt += 1
                log.info("mqtt_connect_failed", client=self.client_id, error=str(exc) or type(exc).__name__,
                         retry_in_s=round(delay, 2))
                await self._sleep(delay)
                continue
            attempt = 0
            self.connects += 1
            self._client, self._acks = client, acks
            for topic, qos in self._subscriptions:
                client.subscribe(topic, qos=qos)
            self._connected.set()
            log.info("mqtt_connected", client=self.client_id, broker=f"{self.address.host}:{self.address.port}",
                     connects=self.connects)
            if self._on_connect is not None:
                try:
                    await self._on_connect()
                except Exception:
                    log.exception("mqtt_on_connect_failed", client=self.client_id)
            await lost.wait()
            self._connected.clear()
            self._client, self._acks = None, None
            acks.fail_all(ConnectionError("connection lost before PUBACK"))
            if self._stopping:
                break
            log.warning("mqtt_connection_lost", client=self.client_id)
            try:
                await asyncio.wait_for(client.disconnect(), 1.0)
            except Exception:  # the transport is gone; nothing to tidy
                pass
            await self._sleep(backoff_delay(0, *self._backoff))

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _received(self, topic: str, payload: bytes, qos: int, ack: Ack | None) -> None:
        assert self._receive is not None
        try:
            self._receive(topic, payload, qos, ack)
        except Exception:
            # As with a failing handler: logged, and the broker still gets its PUBACK.
            self.handler_errors += 1
            log.exception("mqtt_handler_failed", client=self.client_id, topic=topic)
            if ack is not None:
                ack()

    def _received_qos0(self, client: gmqtt.Client, topic: str, payload: bytes, qos: int, properties: dict) -> int:
        self._received(topic, payload, qos, None)
        return 0

    async def _dispatch(self, client: gmqtt.Client, topic: str, payload: bytes, qos: int, properties: dict) -> int:
        """Run the handler, then let gmqtt PUBACK. A failing handler never kills the session."""
        assert self._on_message is not None
        try:
            await self._on_message(topic, payload, qos)
        except Exception:
            self.handler_errors += 1
            log.exception("mqtt_handler_failed", client=self.client_id, topic=topic)
        return 0
