"""A simulated agent for load: the agent's real delivery path (its ``EventOutbox`` and ``MqttSession``,
wired as ``agent/node.py`` wires them) in front of ``printers`` make-believe printers, without drivers.

Many of these in one process stand for a farm in the fleet benchmark and the delivery tests: each is
born with its printers, spools job events that wait for the hub's confirmation, and sends telemetry.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.event_outbox import EventOutbox
from protocol import codec, topics
from protocol.messages import Body, DeviceInfo, DeviceStatus, Heater, JobProgress, NodeState, Telemetry
from protocol.mqtt import MqttSession, NotConnected, Will


class SimulatedNode:
    def __init__(self, url: str, node_id: str, storage: Path, printers: int, *, window: int = 200,
                 replay_jitter_s: float = 2.0, confirm_timeout_s: float = 30.0, max_messages: int = 100_000) -> None:
        self.node_id = node_id
        self.devices = [f"p{i}" for i in range(printers)]
        self.outbox = EventOutbox(storage / f"{node_id}.sqlite3", node_id, max_messages=max_messages, window=window,
                                  replay_jitter_s=replay_jitter_s, confirm_timeout_s=confirm_timeout_s)
        self.session = MqttSession(
            url, f"farmhand-agent-{node_id}", on_message=self._on_message,
            subscriptions=[(topics.node_ack(node_id), 1)], on_connect=self._connected,
            will=Will(topics.node_state(node_id), self._encode(NodeState(online=False))),
            persistent=True, backoff_initial=0.2, backoff_max=2.0,
        )
        self.telemetry_sent = 0

    def _encode(self, body: Body) -> bytes:
        return codec.encode(codec.make(self.node_id, body))

    async def _on_message(self, topic: str, payload: bytes, qos: int) -> None:
        self.outbox.confirm_message(payload)

    async def _connected(self) -> None:
        try:
            for topic, payload in birth(self.node_id, self.devices):
                self.session.publish(topic, payload, qos=1, retain=True)
        finally:
            self.outbox.reconnected()

    # ---------------------------------------------------------------- what the printers do

    def spool(self, count: int, job_ids: dict[str, str] | None = None) -> None:
        """``count`` job progress events, round the printers (for ``job_ids``' jobs where given)."""
        for n in range(count):
            self.outbox.append(topics.node_event(self.node_id), progress(self.devices, n, job_ids))

    def telemetry(self, device: str) -> bool:
        """One QoS 0 reading, as a printing printer sends each second."""
        body = Telemetry(device=device, temperatures={"T0": Heater(actual=210.0, target=210.0)}, progress=0.5)
        try:
            self.session.publish(topics.device_telemetry(self.node_id, device), self._encode(body))
        except NotConnected:
            return False
        self.telemetry_sent += 1
        return True

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.outbox.start_sender(self.session)
        self.session.start()

    async def stop(self) -> None:
        await self.outbox.stop_sender()
        await self.session.stop()
        self.outbox.close()

    async def drained(self, timeout: float) -> bool:
        return await self.outbox.drain(timeout)


def birth(node_id: str, devices: list[str]) -> list[tuple[str, bytes]]:
    """What a node publishes (QoS 1, retained) on every connect: its state with its printers, and each
    printer's status."""
    def encode(body: Body) -> bytes:
        return codec.encode(codec.make(node_id, body))

    state = NodeState(online=True, agent_version="sim", hostname=node_id,
                      devices=[DeviceInfo(id=d, kind="serial_gcode", model="sim") for d in devices])
    return [(topics.node_state(node_id), encode(state))] + [
        (topics.device_status(node_id, d), encode(DeviceStatus(device=d, state="printing", job_id=None, progress=0.0)))
        for d in devices]


def progress(devices: list[str], n: int, job_ids: dict[str, str] | None = None) -> JobProgress:
    """A node's ``n``-th job progress event, round its printers (for ``job_ids``' jobs where given)."""
    device = devices[n % len(devices)]
    return JobProgress(device=device, job_id=(job_ids or {}).get(device, "sim"), progress=(n % 1000) / 1000,
                       lines_done=n)


async def start_all(nodes: list[SimulatedNode]) -> None:
    """Start every node at once: a farm (re)connecting together."""
    for node in nodes:
        node.start()
    await asyncio.gather(*(n.session.wait_connected(30) for n in nodes))
