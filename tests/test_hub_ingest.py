"""MQTT ingest: every event applied exactly once, bad messages counted, never fatal."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from protocol import codec, topics
from protocol.messages import (
    CommandAck,
    DeviceError,
    DeviceState,
    Heater,
    JobCompleted,
    JobProgress,
    JobStarted,
    NodeState,
    Request,
    Response,
    Telemetry,
)
from protocol.mqtt import MqttSession

from .hubkit import Farm, Http, ScriptedNode, eventually, farm, printing_job  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

GCODE = b"G28\nG1 X10\n"

async def counters(http: Http) -> dict[str, int]:
    return (await http.health())["counters"]["ingest"]


async def test_a_replayed_event_is_applied_once(farm: Farm) -> None:
    http, node, job_id = await printing_job(farm)
    half = JobProgress(device="mk3s-1", job_id=str(job_id), progress=0.5, lines_done=1)
    seq = await node.event(half)
    await node.event(JobProgress(device="mk3s-1", job_id=str(job_id), progress=0.9, lines_done=2))
    await eventually(lambda: _progress(http, job_id, 0.9), "progress 0.9")

    await node.event(half, seq=seq)  # the agent's spool replays after an outage
    await eventually(lambda: _count(http, "duplicate_events", 1), "the replay to be seen")
    assert (await http.job(job_id))["progress"] == 0.9, "a replayed event moved the job backwards"
    hub = farm.hubs[-1]
    assert hub.store is not None
    assert hub.store.all("SELECT COUNT(*) AS n FROM events WHERE sender = ? AND seq = ?", (node.id, seq)) == [{"n": 1}]


async def _progress(http: Http, job_id: int, value: float) -> bool:
    return (await http.job(job_id))["progress"] == value


async def _count(http: Http, name: str, value: int) -> bool:
    return (await counters(http)).get(name, 0) >= value


async def test_a_malformed_event_is_counted_and_the_next_one_still_applied(farm: Farm) -> None:
    http, node, job_id = await printing_job(farm)
    event_topic = topics.node_event(node.id)
    await node.session.publish_confirmed(event_topic, b'{"v": 1, "sender": "x", "body": {"type": "job_progre')
    out_of_range = json.loads(codec.encode(codec.make(
        node.id, JobProgress(device="mk3s-1", job_id=str(job_id), progress=0.5), seq=node.seq + 1)))
    out_of_range["body"]["progress"] = 3.0
    await node.session.publish_confirmed(event_topic, json.dumps(out_of_range).encode())
    await node.publish(event_topic, JobProgress(device="mk3s-1", job_id=str(job_id), progress=0.3))  # no seq
    await node.publish(event_topic, NodeState(online=True), seq=node.seq + 2)  # not an event

    await node.event(DeviceError(device="mk3s-1", message="Heater T0 thermal runaway"))
    devices = await eventually(lambda: _device_error(http, f"{node.id}/mk3s-1"), "the device error to show")
    assert devices == "Heater T0 thermal runaway"
    seen = await counters(http)
    assert (seen["malformed"], seen["missing_seq"], seen["wrong_type"]) == (2, 1, 1)
    assert (await http.job(job_id))["progress"] is None, "an invalid progress value was applied"


async def _device_error(http: Http, ref: str) -> Any:
    return (await http.devices())[ref]["error"]


async def test_an_event_about_a_job_the_device_does_not_hold_is_counted_not_applied(farm: Farm) -> None:
    http, node, job_id = await printing_job(farm)
    await node.event(JobCompleted(device="mk3s-2", job_id=str(job_id), duration_s=1.0, lines=1))
    await node.event(JobCompleted(device="mk3s-1", job_id="no-such-job", duration_s=1.0, lines=1))
    await eventually(lambda: _count(http, "stray_events", 2), "both stray events to be counted")
    assert (await http.job(job_id))["state"] == "printing"


async def test_progress_moves_an_assigned_or_running_job_of_its_device_only(farm: Farm) -> None:
    """Progress takes one statement on a running job and another on one still assigned (the device's
    acceptance on the way): both apply it, and neither moves a job another device holds."""
    hub = await farm.hub()
    http = farm.http(hub)
    node = await farm.node("mk3s-1", "mk3s-2")
    await eventually(lambda: http.devices(), "the hub to see the devices")
    job = await http.submit(await http.upload(GCODE), device=f"{node.id}/mk3s-1")
    start = await node.command()
    assert (await http.job(job["id"]))["state"] == "assigned"

    await node.event(JobProgress(device="mk3s-1", job_id=start.job_id, progress=0.2, lines_done=1))
    running = await http.wait_state(job["id"], "printing")
    assert (running["progress"], running["lines"]) == (0.2, 1)
    await node.event(JobProgress(device="mk3s-2", job_id=start.job_id, progress=0.9, lines_done=9))
    await eventually(lambda: _count(http, "stray_events", 1), "the other device's progress to be counted stray")
    await node.event(JobProgress(device="mk3s-1", job_id=start.job_id, progress=0.4, lines_done=2))
    await eventually(lambda: _progress(http, job["id"], 0.4), "progress 0.4")
    done = await http.job(job["id"])
    assert (done["state"], done["lines"]) == ("printing", 2)


async def test_a_node_that_vanishes_goes_offline_and_its_job_keeps_running(farm: Farm) -> None:
    http, node, job_id = await printing_job(farm)
    await node.die()

    async def offline() -> bool:
        return not (await http.devices())[f"{node.id}/mk3s-1"]["online"]

    await eventually(offline, "the device to show offline")
    assert (await http.job(job_id))["state"] == "printing"


async def test_devices_show_status_and_the_latest_temperatures(farm: Farm) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    node = await farm.node("mk3s-1")
    await node.status("mk3s-1", DeviceState.IDLE, temperatures={"T0": Heater(actual=24.0)})
    await node.publish(topics.device_telemetry(node.id, "mk3s-1"),
                       Telemetry(device="mk3s-1", temperatures={"T0": Heater(actual=201.5, target=215.0)}))

    async def heated() -> dict[str, Any] | None:
        device = (await http.devices()).get(f"{node.id}/mk3s-1")
        return device if device and device["temperatures"].get("T0", {}).get("actual") == 201.5 else None

    device = await eventually(heated, "the telemetry to reach the device list")
    assert device["online"] and device["state"] == "idle" and device["kind"] == "serial_gcode"
    assert device["temperatures"]["T0"]["target"] == 215.0


class Script:
    """A script talking to the hub over MQTT only."""

    def __init__(self, url: str) -> None:
        self.client = f"script-{uuid.uuid4().hex[:8]}"
        self.answers: dict[str, Response] = {}
        self.session = MqttSession(url, self.client, on_message=self._answer,
                                   subscriptions=[(topics.hub_response(self.client), 1)], persistent=False)

    async def _answer(self, topic: str, payload: bytes, qos: int) -> None:
        response = codec.decode(payload).body
        assert isinstance(response, Response)
        self.answers[response.correlation_id] = response

    async def ask(self, method: str, correlation_id: str | None = None, **params: Any) -> Response:
        cid = correlation_id or uuid.uuid4().hex
        request = Request(correlation_id=cid, method=method, params=params)  # type: ignore[arg-type]
        self.answers.pop(cid, None)
        await self.session.publish_confirmed(topics.hub_request(self.client),
                                             codec.encode(codec.make(self.client, request)))
        return await eventually(lambda: self.answers.get(cid), f"an answer to {method}")


async def test_script_requests_over_mqtt_use_the_job_service(farm: Farm) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    sha = await http.upload(GCODE, "bracket.gcode")
    script = Script(farm.mqtt_url)
    script.session.start()
    await script.session.wait_connected(10)
    try:
        submitted = await script.ask("submit_job", correlation_id="order-1", file_sha256=sha, name="bracket")
        assert submitted.ok and submitted.result["state"] == "queued"
        job_id = submitted.result["id"]
        again = await script.ask("submit_job", correlation_id="order-1", file_sha256=sha, name="bracket")
        assert again.result["id"] == job_id, "a redelivered submission queued a second job"

        fetched = await script.ask("get_job", id=job_id)
        assert fetched.ok and fetched.result == await http.job(job_id)
        listed = await script.ask("list_jobs", state="queued")
        assert [j["id"] for j in listed.result["items"]] == [job_id]
        cancelled = await script.ask("cancel_job", id=job_id)
        assert cancelled.ok and cancelled.result["state"] == "cancelled"

        missing = await script.ask("get_job", id=10_000)
        assert not missing.ok and missing.error == "no job 10000"
        invalid = await script.ask("submit_job", file_sha256="nope")
        assert not invalid.ok and "file_sha256" in invalid.error
    finally:
        await script.session.stop()
