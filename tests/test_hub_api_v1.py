"""API v1 conventions across resources: pages and filters, ETags, the OpenAPI
document, device controls and the live stream."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from hub.bus import Bus
from protocol.messages import (
    CommandAck,
    DeviceState,
    EmergencyStop,
    JobPaused,
    JobStarted,
    PauseJob,
    ResumeJob,
    StartJob,
)

from .authkit import bearer
from .hubkit import Farm, farm, isolated_farm  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

GCODE = b"G28\nG1 X10 F3000\n"


async def test_lists_page_with_a_cursor_and_filter_on_fields(isolated_farm: Farm) -> None:
    farm = isolated_farm  # no other test's devices take these jobs
    hub = await farm.hub()
    http = farm.http(hub)
    sha = await http.upload(GCODE)
    ids = [(await http.submit(sha, name=f"part {n}"))["id"] for n in range(5)]
    await http.call("POST", f"/api/v1/jobs/{ids[0]}/cancel")

    seen, cursor = [], None
    while True:
        status, page = await http.call("GET", "/api/v1/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert status == 200 and len(page["items"]) <= 2
        seen += [j["id"] for j in page["items"]]
        if (cursor := page["next"]) is None:
            break
    assert seen == ids

    _, cancelled = await http.call("GET", "/api/v1/jobs", params={"state": "cancelled"})
    assert [j["id"] for j in cancelled["items"]] == [ids[0]]
    status, problem = await http.call("GET", "/api/v1/jobs", params={"colour": "red"})
    assert status == 422 and "colour" in problem["detail"]
    status, problem = await http.call("GET", "/api/v1/devices", params={"limit": "0"})
    assert status == 422 and "limit" in problem["detail"]


async def test_reads_carry_etags_and_answer_304_until_something_changes(farm: Farm) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    sha = await http.upload(GCODE)
    async with http.session.get(f"{hub.http_url}/api/v1/jobs") as r:
        tag = r.headers["ETag"]
    async with http.session.get(f"{hub.http_url}/api/v1/jobs", headers={"If-None-Match": tag}) as r:
        assert r.status == 304 and await r.read() == b""
    await http.submit(sha)
    async with http.session.get(f"{hub.http_url}/api/v1/jobs", headers={"If-None-Match": tag}) as r:
        assert r.status == 200 and r.headers["ETag"] != tag


async def test_openapi_documents_every_api_route_with_its_models(farm: Farm) -> None:
    hub = await farm.hub()
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{hub.http_url}/api/v1/openapi.json") as r:
            doc = await r.json()
        async with s.get(f"{hub.http_url}/api/docs") as r:
            page = await r.text()
    assert doc["openapi"] == "3.1.0"
    served = {(route.method.lower(), route.resource.canonical) for route in hub._runner.app.router.routes()
              if route.resource is not None and route.resource.canonical.startswith("/api/v1/")
              and route.method not in ("HEAD", "*")}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served <= documented
    create = doc["paths"]["/api/v1/jobs"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/JobCreate")
    assert "JobCreate" in doc["components"]["schemas"] and "Problem" in doc["components"]["schemas"]
    assert doc["paths"]["/api/v1/jobs/{id}/cancel"]["post"]["x-roles"] == ["admin", "operator"]
    assert "http://" not in page and "https://" not in page, "the docs page must work without a network"


async def test_pause_resume_and_emergency_stop_reach_the_device(farm: Farm) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    node = await farm.node("mk4")
    job = await http.submit(await http.upload(GCODE))
    start = await node.command()
    assert isinstance(start, StartJob)
    status, problem = await http.call("POST", f"/api/v1/jobs/{job['id']}/resume")
    assert status == 409 and "paused" in problem["detail"]


    await node.event(CommandAck(command_id=start.command_id, status="accepted"))
    await node.event(JobStarted(device="mk4", job_id=start.job_id, lines_total=2))
    await http.wait_state(job["id"], "printing")

    status, accepted = await http.call("POST", f"/api/v1/jobs/{job['id']}/pause")
    assert status == 202
    pause = await node.command()
    assert isinstance(pause, PauseJob) and pause.command_id == accepted["command_id"]
    await node.event(JobPaused(device="mk4", job_id=start.job_id))
    await http.wait_state(job["id"], "paused")
    assert (await http.call("POST", f"/api/v1/jobs/{job['id']}/resume"))[0] == 202
    assert isinstance(await node.command(), ResumeJob)

    assert (await http.call("POST", f"/api/v1/devices/{node.id}/mk4/emergency-stop"))[0] == 202
    assert isinstance(await node.command(), EmergencyStop)
    assert (await http.call("POST", f"/api/v1/devices/{node.id}/nope/emergency-stop"))[0] == 404


async def test_live_stream_sends_what_the_page_subscribed_to(farm: Farm) -> None:
    hub = await farm.hub()
    node = await farm.node("mk4")
    async with aiohttp.ClientSession(headers=bearer("viewer")) as s:
        async with s.ws_connect(f"{hub.http_url}/api/v1/live") as ws:
            await ws.send_json({"subscribe": [f"devices:{node.id}/mk4"]})
            assert (await ws.receive_json(timeout=10))["subscribed"] == [f"devices:{node.id}/mk4"]
            await node.status("mk4", DeviceState.PRINTING, progress=0.5)
            msg: dict = {}
            while msg.get("data", {}).get("state") != "printing":
                batch = await ws.receive_json(timeout=10)
                msg = next((m for m in batch if m["data"]["state"] == "printing"), batch[-1])
            assert msg["topic"] == "devices" and msg["key"] == f"{node.id}/mk4" and msg["data"]["progress"] == 0.5


async def test_live_stream_needs_credentials(farm: Farm) -> None:
    hub = await farm.hub()
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await s.ws_connect(f"{hub.http_url}/api/v1/live")
    assert err.value.status == 401


async def test_a_slow_subscriber_is_dropped_and_never_blocks_the_publisher() -> None:
    bus = Bus(queue_limit=3)
    slow, fast = bus.subscribe(), bus.subscribe()
    slow.topics = fast.topics = frozenset({"devices"})
    kicked = []
    slow.kick = lambda: kicked.append(True)
    for n in range(3):
        bus.publish("devices", "a/b", {"n": n})
        await fast.queue.get()  # the fast one keeps up
    bus.publish("devices", "a/b", {"n": 3})  # slow's queue is full: it is dropped, nobody waits
    assert kicked and slow.dropped and slow not in bus.subscribers
    assert json.loads(await asyncio.wait_for(fast.queue.get(), 1))["data"] == {"n": 3}
    bus.publish("jobs", "1", {})
    assert fast.queue.empty(), "a topic nobody subscribed to is not sent"
    assert bus.counters()["dropped_clients"] == 1
