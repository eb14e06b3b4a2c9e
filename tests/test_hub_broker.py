"""The embedded amqtt broker does what the hub and agents rely on, with gmqtt clients:
retained messages, Last Will, and QoS 1 messages queued for a persistent session."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.mqtt.broker import EmbeddedBroker
from protocol import codec, topics
from protocol.messages import HubState
from protocol.mqtt import MqttSession

from .hubkit import Farm, eventually, isolated_farm  # noqa: F401 - fixture

pytestmark = pytest.mark.integration


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    b = EmbeddedBroker("127.0.0.1", 0)
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


class Client:
    def __init__(self, url: str, client_id: str, subscriptions: list[str] = (), persistent: bool = False) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.session = MqttSession(url, client_id, on_message=self._on, persistent=persistent,
                                   subscriptions=[(t, 1) for t in subscriptions])

    async def _on(self, topic: str, payload: bytes, qos: int) -> None:
        self.received.append((topic, payload))

    async def __aenter__(self) -> Client:
        self.session.start()
        await self.session.wait_connected(10)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.session.stop()

    def got(self, topic: str) -> list[bytes]:
        return [p for t, p in self.received if t == topic]


async def test_retained_messages_reach_later_subscribers_of_that_topic_only(broker: EmbeddedBroker) -> None:
    async with Client(broker.url, "publisher") as pub, Client(broker.url, "hub-like", ["farm/+/state"]):
        await pub.session.publish_confirmed("farm/n1/state", b"n1 online", retain=True)
        await pub.session.publish_confirmed("farm/n2/state", b"n2 online", retain=True)
        async with Client(broker.url, "late", ["farm/n1/state"]) as late:
            await eventually(lambda: late.got("farm/n1/state"), "the retained message")
            await pub.session.publish_confirmed("farm/n1/state", b"n1 still online")
            await eventually(lambda: len(late.received) == 2, "a live message after the retained one")
            assert late.got("farm/n2/state") == [], "got a retained message it never subscribed to"


async def test_last_will_is_published_and_retained_when_a_client_dies(broker: EmbeddedBroker, tmp_path: Path) -> None:
    script = tmp_path / "doomed.py"
    script.write_text(
        "import asyncio\n"
        "from protocol.mqtt import MqttSession, Will\n"
        "async def main():\n"
        "    async def ignore(*a): pass\n"
        f"    s = MqttSession({broker.url!r}, 'doomed', on_message=ignore,\n"
        "                    will=Will('farm/doomed/state', b'offline'))\n"
        "    s.start(); await s.wait_connected(10); print('up', flush=True)\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, cwd=Path(__file__).parent.parent)
    try:
        assert proc.stdout is not None
        while (line := await asyncio.to_thread(proc.stdout.readline)) != b"up\n":
            assert line, "the doomed client exited before connecting"
        async with Client(broker.url, "watcher", ["farm/+/state"]) as watcher:
            proc.kill()  # no DISCONNECT: the broker must send the will
            await eventually(lambda: watcher.got("farm/doomed/state") == [b"offline"], "the Last Will")
        async with Client(broker.url, "newcomer", ["farm/+/state"]) as newcomer:
            await eventually(lambda: newcomer.got("farm/doomed/state") == [b"offline"], "the retained will")
    finally:
        proc.kill()
        proc.wait()


async def test_qos1_messages_wait_for_a_persistent_session(broker: EmbeddedBroker) -> None:
    async with Client(broker.url, "sleeper", ["farm/+/event"], persistent=True):
        pass  # subscribed, then gone
    async with Client(broker.url, "agent") as agent:
        for n in range(3):
            await agent.session.publish_confirmed("farm/n1/event", f"event {n}".encode())
    async with Client(broker.url, "sleeper", ["farm/+/event"], persistent=True) as back:
        await eventually(lambda: len(back.got("farm/n1/event")) == 3, "the queued events")
        assert back.got("farm/n1/event") == [b"event 0", b"event 1", b"event 2"]


async def test_a_hub_without_a_broker_url_runs_its_own(isolated_farm: Farm) -> None:
    hub = await isolated_farm.hub()
    assert hub.mqtt_url.startswith("mqtt://127.0.0.1:") and not hub.mqtt_url.endswith(":1883")
    async with Client(hub.mqtt_url, "observer", [topics.hub_state()]) as observer:
        payloads = await eventually(lambda: observer.got(topics.hub_state()), "the hub's retained state")
    state = codec.decode(payloads[0]).body
    assert state == HubState(online=True, version=state.version, http_url=hub.http_url)


@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), ("0.0.0.0", True)])
async def test_an_embedded_broker_open_to_the_network_is_flagged(host: str, warned: bool) -> None:
    from structlog.testing import capture_logs

    b = EmbeddedBroker(host, 0)
    with capture_logs() as logs:
        await b.start()
    await b.stop()
    assert any(e["event"] == "embedded_broker_open_to_the_network" for e in logs) is warned
