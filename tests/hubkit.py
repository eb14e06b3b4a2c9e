"""Helpers for the hub's tests: a running hub, a scripted node, an HTTP client.

Everything is real: the hub on an ephemeral HTTP port, the machine's Mosquitto
(or the hub's embedded broker), SQLite files under tmp_path. A scripted node
(`ScriptedNode`) plays the agent's side of the protocol by hand, so a test
decides exactly which acks and events the hub sees and in what order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.app import Hub
from hub.clock import Clock
from hub.config import HubConfig
from protocol import codec, topics
from protocol.messages import (
    CommandAck,
    DeviceInfo,
    DeviceJob,
    DeviceState,
    DeviceStatus,
    Envelope,
    JobStarted,
    NodeState,
    Rebirth,
    RenderCapabilities,
)
from protocol.mqtt import MqttSession, Will

from .authkit import auth_config, bearer
from .conftest import PrivateMosquitto


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def hub_config(data_dir: Path, mqtt_url: str | None, hub_id: str | None = None, **extra: Any) -> HubConfig:
    return HubConfig.model_validate({
        "hub_id": hub_id or unique("hubtest"),
        "data_dir": data_dir,
        "http": {"host": "127.0.0.1", "port": 0},
        "mqtt": {"url": mqtt_url} if mqtt_url else {"embedded_port": 0},
        "auth": auth_config(),
        **extra,
    })


async def forget_session(mqtt_url: str, client_id: str) -> None:
    """Drop a persistent session from the shared broker so it queues nothing for a finished test."""
    async def ignore(*_: Any) -> None:
        pass

    session = MqttSession(mqtt_url, client_id, on_message=ignore, persistent=False)
    session.start()
    await session.wait_connected(10)
    await session.stop()


async def stop_hub(hub: Hub, *, forget: bool = True) -> None:
    url, client_id = hub.mqtt_url, f"farmhand-hub-{hub.config.hub_id}"
    await hub.stop()
    if forget and hub.config.mqtt.url:
        await forget_session(url, client_id)


async def eventually(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll an (async or plain) check until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Http:
    """The hub's HTTP API as a script uses it; returns (status, json) pairs."""

    def __init__(self, base: str, role: str | None = "admin") -> None:
        """``role``: whose bootstrap token to send (see ``authkit``); None sends none."""
        self.base = base
        self.session = aiohttp.ClientSession(headers=bearer(role) if role else None)

    async def close(self) -> None:
        await self.session.close()

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.session.request(method, f"{self.base}{path}", **kw) as r:
            body = await r.json(content_type=None) if r.content_type.endswith("json") else await r.read()
            return r.status, body

    async def upload(self, data: bytes, name: str = "part.gcode") -> str:
        status, body = await self.call("POST", "/api/v1/files", params={"name": name}, data=data)
        assert status in (200, 201), body
        return body["sha256"]

    async def submit(self, sha: str, **fields: Any) -> dict[str, Any]:
        status, body = await self.call("POST", "/api/v1/jobs", json={"file_sha256": sha, **fields})
        assert status == 201, body
        return body

    async def job(self, job_id: int) -> dict[str, Any]:
        status, body = await self.call("GET", f"/api/v1/jobs/{job_id}")
        assert status == 200, body
        return body

    async def wait_state(self, job_id: int, state: str) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            job = await self.job(job_id)
            return job if job["state"] == state else None
        return await eventually(reached, f"job {job_id} to be {state}")

    async def health(self) -> dict[str, Any]:
        return (await self.call("GET", "/healthz"))[1]

    async def devices(self) -> dict[str, dict[str, Any]]:
        return {d["ref"]: d for d in (await self.call("GET", "/api/v1/devices"))[1]["items"]}


class ScriptedNode:
    """An agent's MQTT side, driven by the test: birth, device status, numbered events, commands received."""

    def __init__(self, mqtt_url: str, devices: list[str], node_id: str | None = None,
                 render: RenderCapabilities | None = None, model: str | None = None) -> None:
        self.id = node_id or unique("node")
        self.url = mqtt_url
        self.devices = devices
        self.render = render
        self.model = model  # machine model every device reports, e.g. "prusa-mk4"
        self.seq = int(time.time() * 1000)
        self.commands: asyncio.Queue[Envelope] = asyncio.Queue()
        self.rebirths: list[Rebirth] = []
        death = codec.encode(codec.make(self.id, NodeState(online=False)))
        self.session = MqttSession(mqtt_url, self.id, on_message=self._received,
                                   subscriptions=[(topics.node_command(self.id), 1)],
                                   will=Will(topics.node_state(self.id), death), persistent=False)

    async def _received(self, topic: str, payload: bytes, qos: int) -> None:
        envelope = codec.decode(payload)
        if isinstance(envelope.body, Rebirth):
            # Kept apart from the commands a test waits for: a hub asks for these on its own
            # (a stale retained status on the shared broker is enough).
            self.rebirths.append(envelope.body)
            return
        await self.commands.put(envelope)

    async def start(self, state: DeviceState = DeviceState.IDLE) -> None:
        self.session.start()
        await self.session.wait_connected(10)
        await self.birth(state)

    async def birth(self, state: DeviceState = DeviceState.IDLE, jobs: list[DeviceJob] | None = None,
                    events_unsent: int = 0) -> None:
        """``jobs``: what each device runs, as an agent's birth says (None: an agent too old to say)."""
        await self.publish(topics.node_state(self.id), NodeState(
            online=True, agent_version="test", hostname=self.id,
            devices=[DeviceInfo(id=d, kind="blender" if self.render else "serial_gcode", render=self.render,
                                model=self.model) for d in self.devices],
            jobs=jobs or [], last_event_seq=self.seq + events_unsent, events_unsent=events_unsent), retain=True)
        for device in self.devices:
            await self.status(device, state)

    async def die(self) -> None:
        """What the broker publishes for a node that vanished: its Last Will."""
        await self.publish(topics.node_state(self.id), NodeState(online=False), retain=True)

    async def publish(self, topic: str, body: Any, *, retain: bool = False, seq: int | None = None) -> None:
        await self.session.publish_confirmed(topic, codec.encode(codec.make(self.id, body, seq)), retain=retain)

    async def status(self, device: str, state: DeviceState, **fields: Any) -> None:
        await self.publish(topics.device_status(self.id, device),
                           DeviceStatus(device=device, state=state, **fields), retain=True)

    async def event(self, body: Any, seq: int | None = None) -> int:
        """Publish a numbered event; returns its seq (pass seq to replay one)."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        await self.publish(topics.node_event(self.id), body, seq=seq)
        return seq

    async def envelope(self, timeout: float = 15.0) -> Envelope:
        """The next command the hub sent this node, whole."""
        return await asyncio.wait_for(self.commands.get(), timeout)

    async def command(self, timeout: float = 15.0) -> Any:
        return (await self.envelope(timeout)).body

    async def stop(self) -> None:
        """Go offline cleanly and clear this node's retained messages from the broker."""
        await self.die()
        for topic in [topics.node_state(self.id), *(topics.device_status(self.id, d) for d in self.devices)]:
            await self.session.publish_confirmed(topic, b"", retain=True)
        await self.session.stop()


# --------------------------------------------------------------------------- fixtures
# Test modules import these by name; pytest then finds them as fixtures.



class Farm:
    """Starts hubs, nodes and HTTP clients for one test, and stops them all after it."""

    def __init__(self, tmp_path: Path, mqtt_url: str | None) -> None:
        self.tmp_path = tmp_path
        self.mqtt_url = mqtt_url
        self.hub_id = unique("hubtest")
        self.hubs: list[Hub] = []
        self.nodes: list[ScriptedNode] = []
        self.clients: list[Http] = []

    async def hub(self, clock: Clock | None = None, **extra: Any) -> Hub:
        """A hub on this test's data dir (on ``clock``'s time of day, if given); call again after stopping it to
        restart it."""
        hub = Hub(hub_config(self.tmp_path / "hub", self.mqtt_url, hub_id=self.hub_id, **extra), clock)
        await hub.start()
        self.hubs.append(hub)
        return hub

    async def node(self, *devices: str, state: DeviceState = DeviceState.IDLE,
                   render: RenderCapabilities | None = None, model: str | None = None) -> ScriptedNode:
        url = self.mqtt_url or self.hubs[-1].mqtt_url
        node = ScriptedNode(url, list(devices), render=render, model=model)
        await node.start(state)
        self.nodes.append(node)
        # Tests act on the node next: wait until every running hub has taken in its devices.
        for hub in self.hubs:
            if hub.store is not None and hub.fleet is not None:
                await eventually(lambda h=hub: all(h.fleet.device(node.id, d) for d in devices),
                                 f"hub {hub.config.hub_id} to know node {node.id}")
        return node

    def http(self, hub: Hub, role: str | None = "admin") -> Http:
        client = Http(hub.http_url, role)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for node in self.nodes:
            if node.session.connected:
                await node.stop()
            else:
                await node.session.stop()
        for hub in reversed(self.hubs):
            if hub.store is not None:
                await hub.stop()
        if self.mqtt_url:
            await forget_session(self.mqtt_url, f"farmhand-hub-{self.hub_id}")


async def printing_job(farm: Farm, **job: Any) -> tuple[Http, ScriptedNode, int]:
    """A hub, a node with one printer, and a job it prints (started, accepted)."""
    hub = await farm.hub()
    http = farm.http(hub)
    node = await farm.node("mk3s-1")
    await eventually(lambda: http.devices(), "the hub to see the device")
    job = await http.submit(await http.upload(b"G28\nG1 X10\n"), device=f"{node.id}/mk3s-1", **job)
    start = await node.command()
    await node.event(CommandAck(command_id=start.command_id, status="accepted"))
    await node.event(JobStarted(device="mk3s-1", job_id=start.job_id))
    await http.wait_state(job["id"], "printing")
    return http, node, job["id"]



@pytest.fixture
async def farm(tmp_path: Path, mosquitto_url: str):  # type: ignore[no-untyped-def]
    """Hubs and scripted nodes on the machine's Mosquitto."""
    f = Farm(tmp_path, mosquitto_url)
    try:
        yield f
    finally:
        await f.close()


@pytest.fixture
async def isolated_farm(tmp_path: Path, farm_broker: str):  # type: ignore[no-untyped-def]
    """Hubs on a broker of their own: no other test's devices can take this test's jobs."""
    broker = None
    if farm_broker == "mosquitto":
        (tmp_path / "mosquitto").mkdir()
        broker = PrivateMosquitto(tmp_path / "mosquitto")
        broker.start()
    f = Farm(tmp_path, broker.url if broker else None)
    try:
        yield f
    finally:
        try:
            await f.close()
        finally:
            if broker is not None:
                broker.stop()
