"""Ingest fed messages drawn from the protocol's own JSON Schema: valid, near-valid and oversized.

Whatever arrives, the loop goes on: nothing raises out of a handler (the
``errors`` counter stays 0), a message the schema allows is accepted, and
every message it refuses is counted once under the reason it was refused.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hub.app import Hub
from hub.config import HubConfig
from hub.mqtt import Mqtt
from hub.store import Store
from protocol import codec, topics
from protocol.messages import MAX_PAYLOAD_BYTES
from protocol.schema import envelope_schema

from .schema_strategies import documents, near_misses

SCHEMA = envelope_schema()
ENVELOPES = documents(SCHEMA, SCHEMA["$defs"])
REFUSALS = ("unknown_topic", "malformed", "wrong_type", "sender_mismatch", "device_mismatch", "missing_seq")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture])


class Fed:
    """One hub's ingest on its own database, with a loop to feed it on."""

    def __init__(self, data_dir: Path) -> None:
        self.store = Store(data_dir)
        # The hub's own components, built (not started): the ingest with every subscriber it has in a hub.
        hub = Hub(HubConfig.model_validate({"hub_id": "hub", "data_dir": data_dir,
                                            "auth": {"admin_password": "fuzz-password-1"}}))
        hub.components = hub._build(self.store)
        self.ingest = next(c for c in hub.components if isinstance(c, Mqtt)).ingest
        self.loop = asyncio.new_event_loop()

    def feed(self, topic: str, payload: bytes) -> dict[str, int]:
        """Counters that moved: what ingest made of this one message."""
        before = dict(self.ingest.counts)
        self.loop.run_until_complete(self.ingest.handle(topic, payload, 1))
        return {k: v - before.get(k, 0) for k, v in self.ingest.counts.items() if v != before.get(k, 0)}

    def close(self) -> None:
        self.loop.close()
        self.store.close()


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Fed]:
    f = Fed(tmp_path / "hub")
    yield f
    f.close()


def topic_for(envelope: dict[str, Any]) -> str:
    """The topic a message of this kind travels on, from this sender (and device)."""
    body, sender = envelope["body"], envelope["sender"]
    device = body.get("device") if isinstance(body.get("device"), str) and body.get("device") else "d"
    match body.get("type"):
        case "node_state":
            return topics.node_state(sender)
        case "device_status":
            return topics.device_status(sender, device)
        case "telemetry":
            return topics.device_telemetry(sender, device)
        case "host_metrics":
            return topics.node_metrics(sender)
        case "request":
            return topics.hub_request(sender)
        case _:
            return topics.node_event(sender)


def decodes(payload: bytes) -> bool:
    try:
        codec.decode(payload)
    except codec.ProtocolError:
        return False
    return True


def refused(moved: dict[str, int]) -> list[str]:
    return [k for k in REFUSALS if moved.get(k)]


@FUZZ
@given(envelope=ENVELOPES)
def test_every_message_the_schema_allows_is_accepted(fed: Fed, envelope: dict[str, Any]) -> None:
    moved = fed.feed(topic_for(envelope), json.dumps(envelope).encode())
    assert not moved.get("errors"), "a handler raised"
    # Only what the topic rules refuse (a command sent on an event topic, an event without seq) may fail.
    assert not {"malformed", "sender_mismatch", "device_mismatch", "unknown_topic"} & set(moved), (moved, envelope)


@FUZZ
@given(envelope=near_misses(ENVELOPES), topic_is_right=st.booleans())
def test_every_near_miss_is_refused_counted_once_and_the_loop_goes_on(fed: Fed, envelope: dict[str, Any],
                                                                     topic_is_right: bool) -> None:
    payload = json.dumps(envelope).encode()
    assume(topic_is_right is False or not decodes(payload))  # dropping an optional field can leave it valid
    topic = topic_for(envelope) if topic_is_right else "farmhand/v1/node/x/device"
    moved = fed.feed(topic, payload)
    assert not moved.get("errors"), "a handler raised"
    assert moved["received"] == 1
    assert len(refused(moved)) == 1 and sum(moved[k] for k in refused(moved)) == 1, (moved, envelope)


@FUZZ
@given(envelope=ENVELOPES, padding=st.integers(min_value=1, max_value=4096))
def test_an_oversized_message_is_refused_unread(fed: Fed, envelope: dict[str, Any], padding: int) -> None:
    text = json.dumps(envelope)
    payload = (text[:-1] + ', "pad": "' + "x" * (MAX_PAYLOAD_BYTES - len(text) + padding) + '"}').encode()
    moved = fed.feed(topic_for(envelope), payload)
    assert moved.get("malformed") == 1 and not moved.get("errors")
