"""The wire contract: every message round-trips, bad payloads fail with the field named."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import get_args

import pytest

from protocol import codec, topics
from protocol import messages as m
from protocol.docs import topics_markdown
from protocol.examples import EXAMPLES
from protocol.mqtt import BATCH_S, Ack, BrokerAddress, MqttSession, NotConnected, backoff_delay, loggable_url
from protocol.schema import envelope_schema

from .conftest import PrivateMosquitto

def test_examples_cover_every_body_type() -> None:
    union_members = get_args(get_args(m.Body)[0])
    assert {type(e) for e in EXAMPLES} == set(union_members)


@pytest.mark.parametrize("body", EXAMPLES, ids=lambda b: b.type)
def test_every_message_round_trips(body: m.Model) -> None:
    env = codec.make("node-1", body, seq=7)
    decoded = codec.decode(codec.encode(env))
    assert decoded == env
    assert decoded.ts.tzinfo is not None and decoded.ts.utcoffset().total_seconds() == 0


def test_envelope_carries_version_id_time_sender_seq() -> None:
    wire = json.loads(codec.encode(codec.make("pi-01", EXAMPLES[5], seq=3)))
    assert wire["v"] == 1 and wire["sender"] == "pi-01" and wire["seq"] == 3
    assert len(wire["id"]) == 32 and wire["body"]["type"] == "job_started"
    assert datetime.fromisoformat(wire["ts"]).tzinfo is not None


def _wire(**changes: object) -> bytes:
    wire = json.loads(codec.encode(codec.make("pi-01", EXAMPLES[6], seq=1)))
    for key, value in changes.items():
        target = wire
        *path, last = key.split("__")
        for p in path:
            target = target[p]
        target[last] = value
    return json.dumps(wire).encode()


@pytest.mark.parametrize(
    ("payload", "names"),
    [
        (b"not json", "Invalid JSON"),
        (b"[]", "payload"),
        (_wire(body__progress=3), "body.progress (job_progress)"),
        (_wire(body__type="launch_rockets"), "body"),
        (_wire(body__surprise=1), "body.surprise"),
        (_wire(v=2), "v:"),
        (_wire(seq=0), "seq:"),
        (_wire(sender="a/b"), "sender:"),
        (_wire(ts="2026-01-01T00:00:00"), "ts:"),
    ],
)
def test_malformed_payloads_are_rejected_naming_the_field(payload: bytes, names: str) -> None:
    with pytest.raises(codec.ProtocolError) as err:
        codec.decode(payload)
    assert names in str(err.value)


def test_topics_parse_back_to_their_parts() -> None:
    assert topics.parse(topics.device_status("pi-01", "mk3s-1")) == topics.ParsedTopic(
        "device_status", node="pi-01", device="mk3s-1")
    assert topics.parse(topics.hub_request("script-7")).client == "script-7"
    assert topics.parse("farmhand/v2/hub/state") is None
    assert topics.parse("other/thing") is None
    for spec in topics.SPECS:
        concrete = spec.pattern.format(node="n", device="d", client="c")
        parsed = topics.parse(concrete)
        assert parsed is not None and set(topics.allowed_bodies(parsed.kind)) == set(spec.bodies)


def test_schema_names_every_message_and_topic() -> None:
    schema = envelope_schema()
    text = json.dumps(schema)
    for body in EXAMPLES:
        assert f'"{body.type}"' in text
    assert {t["topic"] for t in schema["x-topics"]} == {s.pattern for s in topics.SPECS}


def test_protocol_readme_topic_table_is_current() -> None:
    """protocol/README.md embeds the generated table; regenerate it with `farmhand protocol docs`."""
    readme = (Path(__file__).parents[1] / "protocol" / "README.md").read_text()
    assert topics_markdown() in readme


def test_broker_urls_parse() -> None:
    a = BrokerAddress.parse("mqtt://farm:s%40cret@broker.local:1884")
    assert (a.host, a.port, a.username, a.password, a.tls) == ("broker.local", 1884, "farm", "s@cret", False)
    assert BrokerAddress.parse("mqtts://broker").port == 8883
    with pytest.raises(ValueError, match="mqtt://"):
        BrokerAddress.parse("http://broker")


def test_broker_passwords_stay_out_of_logs() -> None:
    assert loggable_url("mqtt://farm:s%40cret@broker.local:1884") == "mqtt://farm:***@broker.local:1884"
    assert loggable_url("mqtts://hub:pw@[::1]") == "mqtts://hub:***@[::1]"
    assert loggable_url("mqtt://broker:1883") == "mqtt://broker:1883"
    assert "cret" not in repr(BrokerAddress.parse("mqtt://farm:s%40cret@broker.local"))


def test_backoff_grows_then_caps_with_jitter() -> None:
    samples = [backoff_delay(n, 0.5, 30.0) for n in range(20) for _ in range(20)]
    assert all(0.25 <= s <= 30.0 for s in samples)
    late = [backoff_delay(15, 0.5, 30.0) for _ in range(200)]
    assert max(late) > 20 and len(set(late)) > 150  # capped, and spread out


@asynccontextmanager
async def _subscribed(url: str, topic: str, qos: int, handle: Callable[[str, bytes, int], Awaitable[None]],
                      pub: MqttSession) -> AsyncIterator[MqttSession]:
    """A session subscribed to ``topic`` and ``pub`` both connected (and the subscription in place); both stopped
    after."""
    sub = MqttSession(url, f"t-{uuid.uuid4().hex}", on_message=handle, subscriptions=[(topic, qos)], persistent=False)
    sub.start()
    pub.start()
    try:
        await sub.wait_connected(5)
        await pub.wait_connected(5)
        await asyncio.sleep(0.2)
        yield sub
    finally:
        await pub.stop()
        await sub.stop()


@pytest.mark.integration
async def test_readings_published_soon_go_out_together_in_order_and_whole(mosquitto_url: str) -> None:
    """``publish_soon`` (an agent's readings) holds messages for ``BATCH_S`` and sends them in one corked write:
    every one arrives, in order, and none before the batch is due."""
    topic = f"farmhand/v1/test/{uuid.uuid4().hex}"
    heard: list[tuple[float, bytes]] = []

    async def handle(t: str, payload: bytes, qos: int) -> None:
        heard.append((time.monotonic(), payload))

    pub = MqttSession(mosquitto_url, f"t-{uuid.uuid4().hex}", on_message=handle, persistent=False)
    with pytest.raises(NotConnected):
        pub.publish_soon(topic, b"before the connection")
    async with _subscribed(mosquitto_url, topic, 0, handle, pub):
        sent = [f"reading {i}".encode() * (1 + i % 50) for i in range(300)]
        started = time.monotonic()
        for payload in sent:
            pub.publish_soon(topic, payload)
        for _ in range(100):
            if len(heard) == len(sent):
                break
            await asyncio.sleep(0.02)
        assert [payload for _, payload in heard] == sent
        assert min(at for at, _ in heard) - started >= BATCH_S * 0.9


@pytest.mark.integration
async def test_a_subscriber_loop_survives_malformed_payloads(mosquitto_url: str) -> None:
    """Garbage on a topic is counted; the next good message is still handled."""
    topic = f"farmhand/v1/test/{uuid.uuid4().hex}"
    good: list[m.Envelope] = []
    bad: list[str] = []

    async def handle(t: str, payload: bytes, qos: int) -> None:
        try:
            good.append(codec.decode(payload))
        except codec.ProtocolError as exc:
            bad.append(str(exc))
        if payload == b"raise":
            raise RuntimeError("handler bug")

    pub = MqttSession(mosquitto_url, f"t-{uuid.uuid4().hex}", on_message=handle, persistent=False)
    async with _subscribed(mosquitto_url, topic, 1, handle, pub) as sub:
        for payload in (b"\xff\xfe", b"{}", b"raise", codec.encode(codec.make("n", EXAMPLES[5], seq=1))):
            await pub.publish_confirmed(topic, payload)
        for _ in range(50):
            if good:
                break
            await asyncio.sleep(0.05)
        assert [e.body.type for e in good] == ["job_started"]
        assert len(bad) == 3
        assert sub.handler_errors == 1 and sub.connected


@pytest.mark.integration
async def test_a_receiver_acknowledges_a_message_when_it_has_stored_it(private_mosquitto: PrivateMosquitto) -> None:
    """A synchronous receiver (the hub's ingest) is handed the PUBACK to send; while it has not sent it,
    the broker still holds the message and delivers it again on the next connection."""
    topic, client = f"farmhand/v1/test/{uuid.uuid4().hex}", f"t-{uuid.uuid4().hex}"
    got: list[tuple[bytes, Ack | None]] = []

    async def connected() -> MqttSession:
        session = MqttSession(private_mosquitto.url, client, receive=lambda t, p, q, ack: got.append((p, ack)),
                              subscriptions=[(topic, 1)])
        session.start()
        await session.wait_connected(5)
        return session

    async def received(payload: bytes, count: int) -> list[bytes]:
        for _ in range(200):
            if [p for p, _ in got].count(payload) >= count:
                break
            await asyncio.sleep(0.05)
        return [p for p, _ in got]

    async def ignore(t: str, p: bytes, q: int) -> None:
        pass

    publisher = MqttSession(private_mosquitto.url, f"t-{uuid.uuid4().hex}", on_message=ignore, persistent=False)
    publisher.start()
    await publisher.wait_connected(5)
    receiver = await connected()
    await asyncio.sleep(0.2)  # its subscription in place
    await publisher.publish_confirmed(topic, b"one")
    assert await received(b"one", 1) == [b"one"]
    await receiver.stop()  # gone before storing it: no PUBACK
    receiver = await connected()
    assert await received(b"one", 2) == [b"one", b"one"], "a message not acknowledged is delivered again"
    ack = got[-1][1]
    assert ack is not None
    ack()  # stored now
    # The broker reads one connection's packets in order: once it has confirmed this publish, it has
    # taken the PUBACK sent before it (a disconnect right after the PUBACK could otherwise overtake it).
    await receiver.publish_confirmed(f"{topic}/sync", b"")
    await receiver.stop()
    await publisher.publish_confirmed(topic, b"two")
    receiver = await connected()
    try:
        assert await received(b"two", 1) == [b"one", b"one", b"two"], "an acknowledged message came again"
    finally:
        await receiver.stop()
        await publisher.stop()


def test_a_payload_over_the_limit_is_refused_unread() -> None:
    body = m.ConsoleOutput(device="p1", command_id="c1", lines=["ok " + "x" * 200] * 500)
    small = codec.encode(codec.make("pi-1", body))
    assert len(small) < m.MAX_PAYLOAD_BYTES, "the largest console reply still fits"
    huge = small.replace(b'"ok ', b'"' + b"y" * 20_000, 20)
    with pytest.raises(codec.PayloadTooLarge, match="over the limit of 262144"):
        codec.decode(huge)


def test_seq_beyond_63_bits_is_refused_with_the_field_named() -> None:
    wire = json.loads(codec.encode(codec.make("pi-1", m.JobResumed(device="p1", job_id="1"), seq=1)))
    wire["seq"] = 2**70
    with pytest.raises(codec.ProtocolError, match="seq"):
        codec.decode(json.dumps(wire))


def test_a_node_listing_too_many_devices_is_refused() -> None:
    devices = [{"id": f"d{i}", "kind": "bambu"} for i in range(5_000)]
    wire = json.dumps({"v": 1, "id": "a" * 32, "ts": "2026-01-01T00:00:00Z", "sender": "pi-1",
                       "body": {"type": "node_state", "online": True, "devices": devices}})
    assert len(wire) < m.MAX_PAYLOAD_BYTES, "refused for its count, not its size"
    with pytest.raises(codec.ProtocolError, match="devices"):
        codec.decode(wire)


def test_long_free_text_is_cut_and_the_event_kept() -> None:
    failed = m.JobFailed(device="p1", job_id="9", reason="Error:" + "x" * 50_000)
    assert len(failed.reason) == m.TEXT_MAX and failed.reason.endswith("…")
    decoded = codec.decode(codec.encode(codec.make("pi-1", failed, seq=2))).body
    assert decoded == failed
    line = m.ConsoleOutput(device="p1", command_id="c", lines=["echo:" + "z" * 1000]).lines[0]
    assert len(line) == m.LINE_MAX


@pytest.mark.parametrize("field,value", [("progress", "NaN"), ("frame", 10**9)])
def test_numbers_out_of_range_are_refused(field: str, value: object) -> None:
    body: dict[str, object] = {"type": "render_progress", "device": "b1", "task_id": "t1", "frame": 1}
    if field == "progress":
        body = {"type": "telemetry", "device": "p1", "remaining_s": float("nan")}
    else:
        body[field] = value
    wire = json.dumps({"v": 1, "id": "a" * 32, "ts": "2026-01-01T00:00:00Z", "sender": "pi-1", "body": body})
    with pytest.raises(codec.ProtocolError):
        codec.decode(wire)
