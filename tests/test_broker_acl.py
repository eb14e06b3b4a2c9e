"""The shipped broker set-up (systemd/mosquitto-farmhand.conf and .acl) on a real Mosquitto.

Agents on a farm network reach the broker, so who may say what matters: an
agent speaks only for its own node, nobody but the hub commands a node, scripts
ask the hub and read the farm, and a client without a login gets nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from farmhand.broker_cli import BrokerSetupError, add_login, remove_login
from farmhand.client import MqttClient
from farmhand.sample_gcode import ring_tower
from protocol import topics
from protocol.mqtt import MqttSession

from .brokerkit import USERS, locked_broker, login
from .conftest import PrivateMosquitto
from .farm import OnePrinterFarm

pytestmark = pytest.mark.integration
QUIET_S = 0.5  # after a positive control arrived, how long a forbidden message has had to arrive too


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    with locked_broker(tmp_path) as broker:
        yield broker


class Client:
    """A session logged in as ``user`` that keeps what it hears, topic by topic."""

    def __init__(self, broker: PrivateMosquitto, user: str | None, subscriptions: Sequence[str] = ()) -> None:
        self.heard: list[tuple[str, bytes]] = []
        self.arrived = asyncio.Event()
        url = login(broker, user) if user else f"mqtt://127.0.0.1:{broker.port}"
        self.session = MqttSession(url, f"acl-test-{user}",
                                   on_message=self._on_message, subscriptions=[(t, 1) for t in subscriptions],
                                   persistent=False, backoff_max=1.0)

    async def _on_message(self, topic: str, payload: bytes, qos: int) -> None:
        self.heard.append((topic, payload))
        self.arrived.set()

    async def hears(self, payload: bytes) -> None:
        while payload not in [p for _, p in self.heard]:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 10)
        await asyncio.sleep(QUIET_S)


@pytest.fixture
async def connect(broker: PrivateMosquitto) -> AsyncIterator:
    clients: list[Client] = []

    async def connect(user: str | None, subscriptions: Sequence[str] = ()) -> Client:
        client = Client(broker, user, subscriptions)
        clients.append(client)
        client.session.start()
        await client.session.wait_connected(10)
        return client

    yield connect
    for client in clients:
        await client.session.stop()


async def test_an_agent_speaks_only_for_its_own_node(connect) -> None:  # type: ignore[no-untyped-def]
    hub = await connect("hub", [f"{topics.ROOT}/node/+/state", f"{topics.ROOT}/node/+/event"])
    pi1, pi2 = await connect("pi-1"), await connect("pi-2")

    await pi2.session.publish_confirmed(topics.node_state("pi-1"), b"forged by pi-2")
    await pi2.session.publish_confirmed(topics.node_event("pi-1"), b"forged event")
    await pi1.session.publish_confirmed(topics.node_state("pi-1"), b"pi-1 itself")
    await pi2.session.publish_confirmed(topics.node_state("pi-2"), b"pi-2 itself")
    await hub.hears(b"pi-2 itself")

    assert sorted(hub.heard) == [(topics.node_state("pi-1"), b"pi-1 itself"),
                                 (topics.node_state("pi-2"), b"pi-2 itself")]


async def test_only_the_hub_commands_a_node(connect) -> None:  # type: ignore[no-untyped-def]
    pi1 = await connect("pi-1", [topics.node_command("pi-1")])
    pi2, scripts, hub = await connect("pi-2"), await connect("scripts"), await connect("hub")

    await pi2.session.publish_confirmed(topics.node_command("pi-1"), b"heat to 300 from pi-2")
    await scripts.session.publish_confirmed(topics.node_command("pi-1"), b"heat to 300 from a script")
    await hub.session.publish_confirmed(topics.node_command("pi-1"), b"start job 7")
    await pi1.hears(b"start job 7")

    assert pi1.heard == [(topics.node_command("pi-1"), b"start job 7")]


async def test_only_the_hub_confirms_a_nodes_events_and_only_that_node_hears_it(connect) -> None:  # type: ignore[no-untyped-def]
    """A confirmation deletes events from the node's outbox: a forged one would lose them unstored."""
    pi1 = await connect("pi-1", [topics.node_ack("pi-1")])
    pi2 = await connect("pi-2", [topics.node_ack("pi-1")])
    scripts = await connect("scripts", [topics.node_ack("pi-1")])
    hub = await connect("hub")

    await pi1.session.publish_confirmed(topics.node_ack("pi-1"), b"pi-1 confirms itself")
    await pi2.session.publish_confirmed(topics.node_ack("pi-1"), b"forged by pi-2")
    await scripts.session.publish_confirmed(topics.node_ack("pi-1"), b"forged by a script")
    await hub.session.publish_confirmed(topics.node_ack("pi-1"), b"stored up to 7")
    await pi1.hears(b"stored up to 7")

    assert pi1.heard == [(topics.node_ack("pi-1"), b"stored up to 7")]
    assert pi2.heard == [] and scripts.heard == []


async def test_scripts_ask_the_hub_and_agents_cannot(connect) -> None:  # type: ignore[no-untyped-def]
    hub = await connect("hub", [f"{topics.ROOT}/hub/request/+"])
    pi1, scripts = await connect("pi-1"), await connect("scripts", [f"{topics.ROOT}/node/+/event"])

    await pi1.session.publish_confirmed(topics.hub_request("pi-1"), b"submit from an agent")
    await pi1.session.publish_confirmed(topics.node_event("pi-1"), b"job completed")
    await scripts.session.publish_confirmed(topics.hub_request("scripts"), b"submit from a script")
    await hub.hears(b"submit from a script")
    await scripts.hears(b"job completed")

    assert hub.heard == [(topics.hub_request("scripts"), b"submit from a script")]


async def test_a_script_asks_only_on_its_own_topic_and_hears_only_its_own_answers(connect) -> None:  # type: ignore[no-untyped-def]
    hub = await connect("hub", [f"{topics.ROOT}/hub/request/+"])
    scripts = await connect("scripts", [topics.hub_response("scripts"), topics.hub_response("erp")])
    erp = await connect("erp", [topics.hub_response("erp"), topics.hub_response("scripts")])

    await scripts.session.publish_confirmed(topics.hub_request("erp"), b"cancel every job, signed erp")
    await erp.session.publish_confirmed(topics.hub_request("erp"), b"erp's own request")
    await hub.hears(b"erp's own request")
    await hub.session.publish_confirmed(topics.hub_response("scripts"), b"answer for scripts")
    await hub.session.publish_confirmed(topics.hub_response("erp"), b"answer for erp")
    await erp.hears(b"answer for erp")
    await scripts.hears(b"answer for scripts")

    assert hub.heard == [(topics.hub_request("erp"), b"erp's own request")]
    assert scripts.heard == [(topics.hub_response("scripts"), b"answer for scripts")]
    assert erp.heard == [(topics.hub_response("erp"), b"answer for erp")]


async def test_the_hub_and_scripts_logins_have_no_node_of_their_own(connect) -> None:  # type: ignore[no-untyped-def]
    hub = await connect("hub", [f"{topics.ROOT}/node/+/state", f"{topics.ROOT}/node/+/event"])
    scripts = await connect("scripts", [topics.node_command("scripts")])
    pi1 = await connect("pi-1")

    await scripts.session.publish_confirmed(topics.node_state("scripts"), b"a node named scripts")
    await scripts.session.publish_confirmed(topics.node_event("scripts"), b"an event from scripts")
    await hub.session.publish_confirmed(topics.node_command("scripts"), b"a command scripts must not hear")
    await pi1.session.publish_confirmed(topics.node_state("pi-1"), b"pi-1 itself")
    await hub.hears(b"pi-1 itself")

    assert hub.heard == [(topics.node_state("pi-1"), b"pi-1 itself")]
    assert scripts.heard == []


async def test_a_packet_over_the_message_limit_is_refused_at_the_broker(connect) -> None:  # type: ignore[no-untyped-def]
    hub = await connect("hub", [f"{topics.ROOT}/node/+/state"])
    pi1 = await connect("pi-1")
    with pytest.raises((ConnectionError, TimeoutError, asyncio.TimeoutError)):
        await asyncio.wait_for(pi1.session.publish_confirmed(topics.node_state("pi-1"), b"x" * 10_000_000), 5)
    pi2 = await connect("pi-2")
    await pi2.session.publish_confirmed(topics.node_state("pi-2"), b"y" * 200_000)
    await hub.hears(b"y" * 200_000)
    assert [topic for topic, _ in hub.heard] == [topics.node_state("pi-2")], "10 MB never reached the hub"


async def test_a_removed_node_can_no_longer_log_in(broker: PrivateMosquitto, tmp_path: Path) -> None:
    acl, passwd = tmp_path / "farmhand.acl", tmp_path / "farmhand.passwd"
    remove_login("pi-2", acl=acl, passwd=passwd)
    assert "pi-2" not in acl.read_text() and "pi-2:" not in passwd.read_text()
    with pytest.raises(BrokerSetupError, match="hub's own login"):
        add_login("node", "hub", "x", acl=acl, passwd=passwd)
    with pytest.raises(BrokerSetupError, match="not a node"):
        add_login("node", "scripts", "x", acl=acl, passwd=passwd)
    assert await asyncio.to_thread(connack, broker, "pi-2") == "Success", "a positive control before the reload"
    broker.reload()
    assert await asyncio.to_thread(connack, broker, "pi-2") == "Not authorized"
    assert await asyncio.to_thread(connack, broker, "pi-1") == "Success"


def connack(broker: PrivateMosquitto, user: str | None, password: str | None = None, protocol: int = 4) -> str:
    """What the broker answers a login of ``user`` (with ``password``, by default its own; None: no login at
    all) over MQTT ``protocol`` (4 is 3.1.1, 5 is MQTT 5): its CONNACK's reason."""
    import queue

    import paho.mqtt.client as mqtt

    answers: queue.Queue[str] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"connack-{user}",
                         protocol=mqtt.MQTTv5 if protocol == 5 else mqtt.MQTTv311)
    if user is not None:
        client.username_pw_set(user, password or USERS[user])
    client.on_connect = lambda c, u, flags, reason, props: answers.put(str(reason))
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        return answers.get(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("protocol", [4, 5], ids=["mqtt-3.1.1", "mqtt-5"])
@pytest.mark.parametrize(("user", "password", "reason"), [
    (None, None, "Not authorized"), ("pi-1", "not-the-password", "Not authorized"), ("pi-1", None, "Success"),
], ids=["anonymous", "wrong-password", "login"])
def test_a_client_without_a_login_or_with_a_wrong_password_is_refused(
        broker: PrivateMosquitto, protocol: int, user: str | None, password: str | None, reason: str) -> None:
    """The broker's own refusal, beside a login it accepts: a timeout would also pass with the broker down."""
    assert connack(broker, user, password, protocol) == reason


async def test_a_farm_prints_and_a_script_follows_it_through_the_locked_broker(
        broker: PrivateMosquitto, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    async with OnePrinterFarm(tmp_path, login(broker, "hub"), agent_mqtt_url=login(broker, "pi-1"), node_id="pi-1",
                              speed_factor=500) as farm:
        script = await asyncio.to_thread(MqttClient, login(broker, "scripts"))
        try:
            sha = await farm.api.upload(ring_tower(height_mm=0.4))
            job = await asyncio.to_thread(script.request, "submit_job", file_sha256=sha)
            done = await farm.api.wait_job(job["id"], {"completed", "failed", "cancelled"}, timeout=60)
            assert done["state"] == "completed" and done["device"] == "pi-1/mk3s-1"
            listed = await asyncio.to_thread(script.request, "list_jobs", state="completed")
            assert [j["id"] for j in listed["items"]] == [job["id"]]
        finally:
            await asyncio.to_thread(script.close)
    logged = capfd.readouterr()
    assert not [secret for secret in USERS.values() if secret in logged.out + logged.err]
