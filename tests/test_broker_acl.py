"""The shipped broker set-up (systemd/mosquitto-farmhand.conf and .acl) on a real Mosquitto.

Agents on a farm network reach the broker, so who may say what matters: an
agent speaks only for its own node, nobody but the hub commands a node, scripts
ask the hub and read the farm, and a client without a login gets nothing.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from farmhand.client import MqttClient
from farmhand.sample_gcode import ring_tower
from protocol import topics
from protocol.mqtt import MqttSession

from .conftest import PrivateMosquitto
from .farm import OnePrinterFarm

pytestmark = pytest.mark.integration

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
USERS = {"hub": "hub-secret", "scripts": "scripts-secret", "pi-1": "pi-1-secret", "pi-2": "pi-2-secret"}
QUIET_S = 0.5  # after a positive control arrived, how long a forbidden message has had to arrive too


def shipped_access(passwd: Path) -> str:
    """The shipped config's access lines, its files put where this test keeps them."""
    lines = []
    for line in (SYSTEMD / "mosquitto-farmhand.conf").read_text().splitlines():
        key = line.split(" ", 1)[0]
        if key == "allow_anonymous":
            lines.append(line)
        elif key == "password_file":
            lines.append(f"password_file {passwd}")
        elif key == "acl_file":
            lines.append(f"acl_file {SYSTEMD / 'mosquitto-farmhand.acl'}")
    assert len(lines) == 3, lines
    return "\n".join(lines) + "\n"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    passwd = tmp_path / "farmhand.passwd"
    passwd.touch(mode=0o600)
    for user, password in USERS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True, capture_output=True)
    broker = PrivateMosquitto(tmp_path, shipped_access(passwd))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class Client:
    """A session logged in as ``user`` that keeps what it hears, topic by topic."""

    def __init__(self, broker: PrivateMosquitto, user: str | None, subscriptions: Sequence[str] = ()) -> None:
        login = f"{user}:{USERS[user]}@" if user else ""
        self.heard: list[tuple[str, bytes]] = []
        self.arrived = asyncio.Event()
        self.session = MqttSession(f"mqtt://{login}127.0.0.1:{broker.port}", f"acl-test-{user}",
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


async def test_scripts_ask_the_hub_and_agents_cannot(connect) -> None:  # type: ignore[no-untyped-def]
    hub = await connect("hub", [f"{topics.ROOT}/hub/request/+"])
    pi1, scripts = await connect("pi-1"), await connect("scripts", [f"{topics.ROOT}/node/+/event"])

    await pi1.session.publish_confirmed(topics.hub_request("pi-1"), b"submit from an agent")
    await pi1.session.publish_confirmed(topics.node_event("pi-1"), b"job completed")
    await scripts.session.publish_confirmed(topics.hub_request("my-script"), b"submit from a script")
    await hub.hears(b"submit from a script")
    await scripts.hears(b"job completed")

    assert hub.heard == [(topics.hub_request("my-script"), b"submit from a script")]


def _mqtt_string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def connack_code(port: int, login: tuple[str, str] | None, version: int) -> int:
    """Connect with a raw CONNECT (MQTT 3.1.1 is version 4, MQTT 5 is 5); the broker's CONNACK code."""
    flags = 0x02 | (0xC0 if login else 0)  # clean session; user name and password
    variable = _mqtt_string("MQTT") + bytes([version, flags]) + (30).to_bytes(2, "big")
    if version == 5:
        variable += b"\x00"  # no properties
    payload = _mqtt_string(f"acl-raw-{version}") + (_mqtt_string(login[0]) + _mqtt_string(login[1]) if login else b"")
    body = variable + payload
    assert len(body) < 128  # one-byte remaining length
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(bytes([0x10, len(body)]) + body)
        answer = sock.recv(64)
    assert answer[:1] == b"\x20", f"not a CONNACK: {answer!r}"
    return answer[3]


# CONNACK codes: 5 is "not authorised" in MQTT 3.1.1, 0x87 in MQTT 5; 0 is accepted (the control).
@pytest.mark.parametrize(("login", "version", "code"), [
    (None, 4, 5), (("pi-1", "not-the-password"), 4, 5), (("pi-1", USERS["pi-1"]), 4, 0),
    (None, 5, 0x87), (("pi-1", "not-the-password"), 5, 0x87), (("pi-1", USERS["pi-1"]), 5, 0),
], ids=["anonymous-3.1.1", "wrong-password-3.1.1", "login-3.1.1", "anonymous-5", "wrong-password-5", "login-5"])
def test_a_client_without_a_login_or_with_a_wrong_password_is_refused(broker: PrivateMosquitto, login: tuple[str, str] | None,
                                             version: int, code: int) -> None:
    assert connack_code(broker.port, login, version) == code


async def test_a_farm_prints_and_a_script_follows_it_through_the_locked_broker(
        broker: PrivateMosquitto, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    def login(user: str) -> str:
        return f"mqtt://{user}:{USERS[user]}@127.0.0.1:{broker.port}"

    async with OnePrinterFarm(tmp_path, login("hub"), agent_mqtt_url=login("pi-1"), node_id="pi-1",
                              speed_factor=500) as farm:
        script = await asyncio.to_thread(MqttClient, login("scripts"))
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
