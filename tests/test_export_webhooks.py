"""Webhooks against a local receiver: signatures, retries with backoff, dead letters and replay."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from hub.export.signing import HEADER, BadSignature, verify

from .exportkit import Receiver, receiver  # noqa: F401 - fixture
from .hubkit import Farm, Http, eventually, isolated_farm  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

SECRET = "s3cret-for-the-shop-system"
FAST = {"export": {"webhooks": {"backoff_base_s": 0.02, "backoff_max_s": 0.2, "poll_interval_s": 0.05}}}


def fast(**webhooks: Any) -> dict[str, Any]:
    return {"export": {"webhooks": {**FAST["export"]["webhooks"], **webhooks}}}


def bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(body) for _, body in receiver.requests]


async def subscribe(http: Http, url: str, **fields: Any) -> dict[str, Any]:
    status, hook = await http.call("POST", "/api/v1/webhooks", json={"url": url, "secret": SECRET, **fields})
    assert status == 201, hook
    return hook


async def test_a_receiver_gets_subscribed_events_signed(isolated_farm: Farm, receiver: Receiver) -> None:
    hub = await isolated_farm.hub(**FAST)
    http = isolated_farm.http(hub)
    await subscribe(http, receiver.url, event_types=["job.cancelled"])
    sha = await http.upload(b"G28\n")
    job = await http.submit(sha)
    await http.call("POST", f"/api/v1/jobs/{job['id']}/cancel")
    await eventually(lambda: receiver.requests, "the webhook to be called")
    headers, body = receiver.requests[0]
    assert json.loads(body)["type"] == "job.cancelled"  # job.queued was not subscribed to
    assert json.loads(body)["payload"]["job_id"] == job["id"]
    assert headers["X-Farmhand-Event"] == "job.cancelled"
    assert abs(verify(SECRET, headers[HEADER], body) - time.time()) < 30
    with pytest.raises(BadSignature, match="does not match"):
        verify(SECRET, headers[HEADER], body.replace(b"cancelled", b"completed"))
    with pytest.raises(BadSignature, match="does not match"):
        verify("another-secret-entirely", headers[HEADER], body)
    with pytest.raises(BadSignature, match="replay"):
        verify(SECRET, headers[HEADER], body, now=time.time() + 3600)

    viewer = isolated_farm.http(hub, role="viewer")
    assert (await viewer.call("GET", "/api/v1/webhooks"))[0] == 403  # secrets: admins only
    status, made = await http.call("POST", "/api/v1/webhooks", json={"url": receiver.url})
    assert status == 201 and len(made["secret"]) >= 32  # a secret the hub made is shown once
    assert (await http.call("GET", f"/api/v1/webhooks/{made['id']}"))[1]["secret"] is None


async def test_a_receiver_failing_five_times_gets_the_event_later_and_in_order(
        isolated_farm: Farm, receiver: Receiver) -> None:
    hub = await isolated_farm.hub(**fast(max_attempts=8))
    http = isolated_farm.http(hub)
    await subscribe(http, receiver.url)
    receiver.fail_next = 5
    sha = await http.upload(b"G28\n")
    first, second = await http.submit(sha), await http.submit(sha)
    await eventually(lambda: len(receiver.requests) == 7, "five failures, then both events")
    ids = [b["payload"]["job_id"] for b in bodies(receiver)]
    assert ids == [first["id"]] * 6 + [second["id"]]  # the second waits for the first
    assert (await http.call("GET", "/api/v1/export"))[1]["webhooks"]["failed_tries"] == 5


async def test_dead_letters_are_listed_and_replayed(isolated_farm: Farm, receiver: Receiver) -> None:
    hub = await isolated_farm.hub(**fast(max_attempts=3))
    http = isolated_farm.http(hub)
    hook = await subscribe(http, receiver.url)
    receiver.fail_next, receiver.status_when_failing = 3, 503
    sha = await http.upload(b"G28\n")
    lost = await http.submit(sha)
    kept = await http.submit(sha)
    await eventually(lambda: len(receiver.requests) == 4, "three tries of the first event, then the second")

    status, dead = await http.call("GET", f"/api/v1/webhooks/{hook['id']}/dead-letters")
    assert status == 200 and len(dead["items"]) == 1
    letter = dead["items"][0]
    assert letter["type"] == "job.queued" and letter["attempts"] == 3 and letter["error"] == "HTTP 503"
    assert json.loads(receiver.requests[0][1])["id"] == letter["event_id"]
    assert bodies(receiver)[-1]["payload"]["job_id"] == kept["id"]

    receiver.requests.clear()
    status, replayed = await http.call("POST", f"/api/v1/webhooks/{hook['id']}/replay",
                                       params={"from": letter["event_id"]})
    assert status == 200 and replayed["last_id"] == letter["event_id"] - 1
    await eventually(lambda: len(receiver.requests) == 2, "both events delivered again")
    assert [b["payload"]["job_id"] for b in bodies(receiver)] == [lost["id"], kept["id"]]
    await eventually(lambda: hub.export.webhooks.dead_letter_count() == 0, "the dead letter to be cleared")
    status, problem = await http.call("POST", f"/api/v1/webhooks/{hook['id']}/replay", params={"from": "x"})
    assert status == 422
