"""An encrypted farm network: the broker and the hub present certificates of the farm's own CA.

``farmhand certs`` makes the CA and the certificates, a real Mosquitto serves
MQTT over TLS with the broker's, the hub serves HTTPS with its own, and a whole
print runs through both. A certificate of another CA is refused by the agent,
for MQTT and for the job file alike.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from agent.config import HubLink, MqttConfig
from agent.files import FileFetchError, JobFileCache
from agent.node import Agent
from farmhand.certs import CertError, issue, make_ca
from farmhand.sample_gcode import ring_tower
from hub.app import Hub
from protocol.mqtt import tls_context

from .authkit import AGENT_TOKEN
from .conftest import PrivateMosquitto, free_port
from .farm import Api, agent_config, hub_config, start_printer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def farm_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("farm-ca")
    make_ca(folder)
    issue(folder, "broker", ["localhost", "127.0.0.1"])
    issue(folder, "hub", ["127.0.0.1"])
    return folder


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Someone else's CA, issuing for the same names: what a machine in the middle would present."""
    folder = tmp_path_factory.mktemp("other-ca")
    make_ca(folder, name="Not the farm")
    issue(folder, "broker", ["localhost", "127.0.0.1"])
    issue(folder, "hub", ["127.0.0.1"])
    return folder


SHIPPED = Path(__file__).resolve().parent.parent / "systemd" / "mosquitto-farmhand.conf"


def shipped_tls_listener(port: int, certs: Path) -> str:
    """The shipped config's TLS listener, on this test's port with this test's certificates."""
    lines = SHIPPED.read_text().splitlines()
    start = lines.index("listener 8883")
    block = [f"listener {port} 127.0.0.1"]
    for line in lines[start + 1:]:
        key, _, value = line.partition(" ")
        if key not in ("cafile", "certfile", "keyfile", "tls_version"):
            break
        block.append(f"{key} {certs / Path(value).name}" if key.endswith("file") else line)
    assert len(block) == 5, block
    return "\n".join(block) + "\n"


def tls_broker(tmp: Path, certs: Path) -> tuple[PrivateMosquitto, int]:
    port = free_port()
    broker = PrivateMosquitto(tmp, shipped_tls_listener(port, certs) + "allow_anonymous true\n")
    broker.start()
    return broker, port


def test_the_ca_signs_only_once_and_issues_for_the_names_given(tmp_path: Path, farm_ca: Path) -> None:
    with pytest.raises(CertError, match="already has a CA"):
        make_ca(farm_ca)
    with pytest.raises(CertError, match="no CA yet"):
        issue(tmp_path, "hub", ["127.0.0.1"])
    assert oct((farm_ca / "ca.key").stat().st_mode & 0o777) == "0o600"
    assert oct((farm_ca / "hub.key").stat().st_mode & 0o777) == "0o600"


async def test_a_whole_print_over_mqtts_and_https(tmp_path: Path, farm_ca: Path) -> None:
    broker, port = tls_broker(tmp_path, farm_ca)
    mqtts = f"mqtts://localhost:{port}"
    hub = Hub(hub_config(tmp_path / "hub", None,
                         mqtt={"url": mqtts, "ca_file": farm_ca / "ca.crt"},
                         http={"host": "127.0.0.1", "port": 0, "cert_file": farm_ca / "hub.crt",
                               "key_file": farm_ca / "hub.key"}))
    printer = await start_printer(tmp_path, speed_factor=500)
    agent: Agent | None = None
    api: Api | None = None
    try:
        await hub.start()
        assert hub.http_url.startswith("https://")
        config = agent_config(tmp_path / "agent", mqtts, {"mk3s-1": printer.link}).model_copy(update={
            "mqtt": MqttConfig(url=mqtts, ca_file=farm_ca / "ca.crt"),
            "hub": HubLink(token=AGENT_TOKEN, ca_file=farm_ca / "ca.crt")})
        agent = Agent(config)
        await agent.start()
        api = Api(hub.http_url, tls=tls_context(farm_ca / "ca.crt"))
        sha = await api.upload(ring_tower(height_mm=0.4))
        job = await api.submit(sha)
        done = await api.wait_job(job["id"], {"completed", "failed", "cancelled"}, timeout=60)
        assert done["state"] == "completed", done
    finally:
        if api is not None:
            await api.close()
        if agent is not None:
            await agent.stop()
        await hub.stop()
        await printer.stop()
        broker.stop()


async def test_a_broker_with_another_cas_certificate_is_refused(tmp_path: Path, farm_ca: Path,
                                                                 other_ca: Path) -> None:
    broker, port = tls_broker(tmp_path, other_ca)
    try:
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            await asyncio.open_connection("localhost", port, ssl=tls_context(farm_ca / "ca.crt"))
        reader, writer = await asyncio.open_connection("localhost", port, ssl=tls_context(other_ca / "ca.crt"))
        writer.close()  # the positive control: its own CA's clients get in
    finally:
        broker.stop()


async def test_a_hub_with_another_cas_certificate_gets_no_token_and_gives_no_file(tmp_path: Path, farm_ca: Path,
                                                                                   other_ca: Path) -> None:
    hub = Hub(hub_config(tmp_path / "hub", None, http={"host": "127.0.0.1", "port": 0,
                                                        "cert_file": other_ca / "hub.crt",
                                                        "key_file": other_ca / "hub.key"}))
    await hub.start()
    try:
        cache = JobFileCache(tmp_path / "files", 1 << 20, token=AGENT_TOKEN, tls=tls_context(farm_ca / "ca.crt"))
        with pytest.raises(FileFetchError, match="certificate verify failed"):
            await cache.get(f"{hub.http_url}/api/v1/files/{'0' * 64}", "0" * 64, 10)
    finally:
        await hub.stop()
