"""The agent process: devices, the event outbox, commands and metrics around one MQTT session.

Presence follows the Sparkplug-style birth/death pattern: a retained Last
Will (``online: false``) is registered with every connection, and every
(re)connect publishes the birth (``online: true`` with every device's info),
then each device's current status, and only then lets the event outbox replay its
events, so the hub always knows a node and its devices before their events.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from pathlib import Path
from typing import Protocol, runtime_checkable

import structlog

from protocol import codec, topics
from protocol.messages import (Body, DeviceInfo, DeviceJob, DeviceStatus, Event, HostMetrics, HubState,
                               NodeState, Telemetry)
from protocol.mqtt import MqttSession, NotConnected, Will, tls_context

from . import __version__, devices
from .commands import CommandDispatcher, CommandStore
from .config import AgentConfig
from .devices.base import Device, declared_capabilities
from .files import JobFileCache
from .metrics import report_forever
from .event_outbox import EventOutbox

log = structlog.get_logger("farmhand.agent")


@runtime_checkable
class _NodeLinked(Protocol):
    """A driver that keeps files of its own and sends them to the hub (the Blender driver's frames)."""

    def link_node(self, work_dir: Path, token: str | None, tls: ssl.SSLContext | None = None) -> None: ...


def _announced(device: Device) -> DeviceInfo:
    """The device's info with the capabilities its driver declares (console, render, …) added."""
    info = device.info()
    declared = [c for c in declared_capabilities(device) if c not in info.capabilities]
    return info.model_copy(update={"capabilities": [*info.capabilities, *declared]}) if declared else info


class _DeviceEmitter:
    """What one device's driver emits, routed to its topics; the topic comes from the id bound here."""

    def __init__(self, agent: Agent, device_id: str) -> None:
        self._agent = agent
        self._device_id = device_id

    def event(self, body: Event) -> None:
        self._agent.emit_event(body)

    def status(self, status: DeviceStatus) -> None:
        # A driver learns its firmware and capabilities after the birth went out (M115 answers later).
        self._agent.announce_if_changed(self._device_id)
        self._agent.publish_live(topics.device_status(self._agent.node_id, self._device_id), status, qos=1,
                                 retain=True)

    def telemetry(self, telemetry: Telemetry) -> None:
        self._agent.publish_live(topics.device_telemetry(self._agent.node_id, self._device_id), telemetry)


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.node_id = config.node_id
        storage = config.storage
        # Devices first: a driver that refuses its config must fail before the event outbox's lock is taken.
        self.devices: dict[str, Device] = {
            d.id: devices.create(d, _DeviceEmitter(self, d.id), poll_interval_s=config.telemetry_interval_s)
            for d in config.devices
        }
        token = config.hub.token.get_secret_value() if config.hub.token else None
        hub_tls = tls_context(config.hub.ca_file) if config.hub.ca_file else None
        for device in self.devices.values():
            if isinstance(device, _NodeLinked):
                device.link_node(storage.dir / "devices" / device.id, token, hub_tls)
        self.outbox = EventOutbox(storage.dir / "agent.sqlite3", self.node_id, max_messages=storage.spool_max_messages,
                                  window=storage.outbox_window, replay_jitter_s=storage.replay_jitter_s)
        self.files = JobFileCache(
            storage.dir / "files",
            storage.file_cache_mb * 1024 * 1024,
            token=token,
            tls=hub_tls,
        )
        self.commands = CommandDispatcher(
            self.devices, CommandStore(self.outbox, topics.node_event(self.node_id)), self.files,
            rebirth=lambda reason: self._publish_birth(),
        )
        self.session = MqttSession(
            config.mqtt.url,
            f"farmhand-agent-{self.node_id}",
            on_message=self._on_message,
            subscriptions=[(topics.node_command(self.node_id), 1), (topics.node_ack(self.node_id), 1),
                           (topics.hub_state(), 1)],
            on_connect=self._on_connect,
            will=Will(topics.node_state(self.node_id), self._encode(NodeState(online=False)), qos=1, retain=True),
            persistent=True,
            keepalive=config.mqtt.keepalive_s,
            ca_file=config.mqtt.ca_file,
        )
        self.hub_online: bool | None = None
        self.malformed = 0
        self.event_errors = 0
        self._metrics_task: asyncio.Task[None] | None = None
        self._announced: dict[str, DeviceInfo] = {}  # each device's info as the last birth said it

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        interrupted = self.commands.answer_interrupted()
        if interrupted:
            log.warning("commands_interrupted", count=interrupted)
        for device in self.devices.values():
            try:
                await device.open()
            except Exception:
                # One broken device must not keep the others (and the node's presence) down.
                log.exception("device_open_failed", device=device.id)
        self.outbox.start_sender(self.session)
        self.session.start()
        self._metrics_task = asyncio.create_task(
            report_forever(self.config.storage.dir, self.config.metrics_interval_s, self._publish_metrics),
            name="metrics",
        )
        log.info("agent_started", node=self.node_id, devices=sorted(self.devices), version=__version__,
                 spooled=self.outbox.pending())

    async def stop(self) -> None:
        if self._metrics_task is not None:
            self._metrics_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._metrics_task
        await self.commands.close()
        for device in self.devices.values():
            try:
                await device.close()
            except Exception:
                log.exception("device_close_failed", device=device.id)
        # The last events (a job failed on close, an ack) get a moment to be confirmed.
        if self.session.connected and self.hub_online:
            await self.outbox.drain(timeout=2.0)
        await self.outbox.stop_sender()
        farewell = (topics.node_state(self.node_id), self._encode(NodeState(online=False)), 1, True)
        await self.session.stop(farewell=[farewell])
        self.outbox.close()
        log.info("agent_stopped", node=self.node_id, unsent=self.outbox.pending(),
                 dropped_events=self.outbox.dropped_events, dropped_progress=self.outbox.dropped_superseded)

    # ---------------------------------------------------------------- outbound

    def _encode(self, body: Body) -> bytes:
        return codec.encode(codec.make(self.node_id, body))

    def birth(self) -> NodeState:
        statuses = [(d, d.status()) for d in self.devices.values()]
        return NodeState(online=True, agent_version=__version__, hostname=socket.gethostname(),
                         devices=[_announced(d) for d, _ in statuses],
                         jobs=[DeviceJob(device=d.id, state=s.state, job_id=s.job_id, progress=s.progress)
                               for d, s in statuses],
                         last_event_seq=self.outbox.next_seq - 1, events_unsent=self.outbox.pending())

    def announce_if_changed(self, device_id: str) -> None:
        """Publish the birth again when the device's info changed since the last birth went out."""
        # Asked on every status a device publishes, so only that device's info is compared (all of them made
        # an agent of 200 printers compare 200 infos 200 times a second); the birth is built on a change.
        device = self.devices.get(device_id)
        if device is not None and _announced(device) != self._announced.get(device_id):
            birth = self.birth()
            self._announced = {info.id: info for info in birth.devices}
            self.publish_live(topics.node_state(self.node_id), birth, qos=1, retain=True)

    async def _on_connect(self) -> None:
        try:
            self._publish_birth()
        finally:
            self.outbox.reconnected()

    def _publish_birth(self) -> None:
        """The birth, then each device's status: on every connect, and when the hub asks (a rebirth)."""
        birth = self.birth()
        self._announced = {info.id: info for info in birth.devices}
        self.session.publish(topics.node_state(self.node_id), self._encode(birth), qos=1, retain=True)
        for device in self.devices.values():
            self.session.publish(topics.device_status(self.node_id, device.id), self._encode(device.status()),
                                 qos=1, retain=True)

    def emit_event(self, body: Event) -> None:
        try:
            self.outbox.append(topics.node_event(self.node_id), body)
        except Exception:
            # A full disk must not crash the driver's streaming loop mid-print.
            self.event_errors += 1
            log.exception("event_not_spooled", type=body.type, errors=self.event_errors)

    def publish_live(self, topic: str, body: Body, qos: int = 0, retain: bool = False) -> None:
        """Publish now or not at all: a retained status is re-published on reconnect anyway. Readings (QoS 0) go
        out in the session's next batch, within ``BATCH_S``, with the other printers' readings."""
        try:
            if qos:
                self.session.publish(topic, self._encode(body), qos=qos, retain=retain)
            else:
                self.session.publish_soon(topic, self._encode(body), retain=retain)
        except NotConnected:
            pass

    def _publish_metrics(self, metrics: HostMetrics) -> None:
        outbox = {"outbox_depth": self.outbox.pending(), "outbox_dropped": self.outbox.dropped_events}
        self.publish_live(topics.node_metrics(self.node_id), metrics.model_copy(update=outbox))

    # ---------------------------------------------------------------- inbound

    async def _on_message(self, topic: str, payload: bytes, qos: int) -> None:
        if topic == topics.node_command(self.node_id):
            await self.commands.handle(payload)
        elif topic == topics.node_ack(self.node_id):
            self.outbox.confirm_message(payload)
        elif topic == topics.hub_state():
            self._on_hub_state(payload)

    def _on_hub_state(self, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained message
        try:
            body = codec.decode_as(payload, HubState)
        except codec.ProtocolError as exc:
            self.malformed += 1
            log.warning("hub_state_malformed", error=str(exc), malformed_total=self.malformed)
            return
        if body.online != self.hub_online:
            log.info("hub_online" if body.online else "hub_offline", version=body.version or None)
        came_back = body.online and self.hub_online is False
        self.hub_online = body.online
        if came_back:
            # A hub that restarted (or was restored) learns what each device runs now, not at our connect.
            self._publish_birth()
