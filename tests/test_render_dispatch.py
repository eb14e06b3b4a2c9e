"""The render dispatcher against scripted nodes: a node going offline, pause and resume, capability
matching and refused uploads.

Scripted nodes (tests/hubkit.py) play the agent's side by hand, so a test
decides when a node dies or a task ends; no Blender runs here.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from protocol.messages import CancelJob, CommandAck, DeviceState, RenderCapabilities, RenderTaskCompleted, StartRender

from .authkit import bearer
from .conftest import PrivateMosquitto
from .hubkit import Farm, ScriptedNode

CPU_NODE = RenderCapabilities(blender_version="3.4.1", engines=["CYCLES"], devices=["CPU"])
FAKE_BLEND = b"BLENDER-v304" + bytes(200)


@pytest.fixture
async def farm(tmp_path: Path, private_mosquitto: PrivateMosquitto) -> AsyncIterator[Farm]:
    f = Farm(tmp_path, private_mosquitto.url)
    try:
        yield f
    finally:
        await f.close()


async def started(node: ScriptedNode) -> StartRender:
    body = await node.command()
    assert isinstance(body, StartRender), body
    await node.event(CommandAck(command_id=body.command_id, status="accepted"))
    await node.status("r1", DeviceState.PRINTING, job_id=body.task_id)
    return body


async def finish(node: ScriptedNode, body: StartRender) -> None:
    await node.event(RenderTaskCompleted(device="r1", task_id=body.task_id, duration_s=1.0,
                                         frames=list(range(body.frame_start, body.frame_end + 1))))
    await node.status("r1", DeviceState.IDLE)


async def submit(http, **fields) -> int:  # type: ignore[no-untyped-def]
    sha = await http.upload(FAKE_BLEND, name="shot.blend")
    status, body = await http.call("POST", "/api/v1/render-jobs", json={"blend_sha256": sha, **fields})
    assert status == 201, body
    return body["jobs"][0]["id"]


@pytest.mark.integration
async def test_a_task_on_a_node_that_goes_offline_runs_again_elsewhere(farm: Farm) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    a = await farm.node("r1", render=CPU_NODE)
    b = await farm.node("r1", render=CPU_NODE)
    job_id = await submit(http, frame_start=1, frame_end=4, chunk_size=2, preview=False)
    first, second = await started(a), await started(b)
    assert {(first.frame_start, first.frame_end), (second.frame_start, second.frame_end)} == {(1, 2), (3, 4)}

    await a.die()
    stop = await a.command()  # should it come back still rendering, it stops
    assert isinstance(stop, CancelJob) and stop.job_id == first.task_id
    await finish(b, second)
    again = await started(b)
    assert (again.frame_start, again.frame_end) == (first.frame_start, first.frame_end)
    assert again.task_id != first.task_id  # a new attempt: late news of the old one is stray
    await finish(b, again)
    job = await _wait(http, job_id, "completed")
    retried = [t for t in job["tasks"] if t["attempt"] == 1]
    assert len(retried) == 1 and "went offline" in retried[0]["error"]


async def _wait(http, job_id: int, state: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    for _ in range(300):
        status, job = await http.call("GET", f"/api/v1/render-jobs/{job_id}")
        if job["state"] == state:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"render job {job_id} never {state}: {job}")


@pytest.mark.integration
async def test_pause_holds_new_tasks_and_resume_releases_them(farm: Farm) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    node = await farm.node("r1", render=CPU_NODE)
    job_id = await submit(http, frame_start=1, frame_end=4, chunk_size=2, preview=False)
    first = await started(node)
    status, job = await http.call("POST", f"/api/v1/render-jobs/{job_id}/pause")
    assert status == 200 and job["state"] == "paused"
    await finish(node, first)
    with pytest.raises(TimeoutError):
        await node.command(timeout=1.5)
    status, job = await http.call("POST", f"/api/v1/render-jobs/{job_id}/resume")
    assert status == 200 and job["state"] == "rendering"
    second = await started(node)
    assert (second.frame_start, second.frame_end) == (3, 4)


@pytest.mark.integration
async def test_tasks_go_only_to_nodes_that_can_render_them(farm: Farm) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    cpu = await farm.node("r1", render=CPU_NODE)
    gpu = await farm.node("r1", render=RenderCapabilities(
        blender_version="3.4.1", engines=["CYCLES"], devices=["CPU", "OPTIX"],
        gpus=[{"index": 0, "name": "RTX 4090", "vram_mb": 24000}]))
    await submit(http, frame_start=1, frame_end=2, preview=False, chunk_size=1, cycles_device="OPTIX",
                 min_vram_mb=16000)
    one = await started(gpu)
    assert one.cycles_device == "OPTIX" and one.frame_start == 1
    with pytest.raises(TimeoutError):
        await cpu.command(timeout=1.0)  # frame 2 waits for the GPU node rather than go to the CPU one


@pytest.mark.integration
async def test_an_upload_whose_hash_does_not_match_is_refused_and_not_kept(farm: Farm) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    node = await farm.node("r1", render=CPU_NODE)
    job_id = await submit(http, frame_start=1, frame_end=1, preview=False)
    task = await started(node)
    png = b"\x89PNG\r\n\x1a\nnot really an image"

    async def post(frame: int, claimed: str) -> tuple[int, dict]:  # type: ignore[type-arg]
        form = aiohttp.FormData()
        form.add_field("task_id", task.task_id)
        form.add_field("frame", str(frame))
        form.add_field("sha256", claimed)
        form.add_field("file", png, filename="frame_0001.png", content_type="image/png")
        async with aiohttp.ClientSession(headers=bearer("agent")) as s, \
                s.post(f"{hub.http_url}/api/v1/render/outputs", data=form) as r:
            return r.status, await r.json(content_type=None)

    status, body = await post(1, "0" * 64)
    assert status == 422 and "does not match" in body["detail"]
    status, body = await post(7, hashlib.sha256(png).hexdigest())
    assert status == 422 and "not in task" in body["detail"]
    assert (await http.call("GET", f"/api/v1/render-jobs/{job_id}/outputs"))[1]["items"] == []
    assert (await http.call("GET", f"/api/v1/files/{hashlib.sha256(png).hexdigest()}"))[0] == 404
    status, body = await post(1, hashlib.sha256(png).hexdigest())
    assert status == 201 and body["frame"] == 1


@pytest.mark.integration
async def test_cameras_make_one_job_each_and_reach_blender_as_settings(farm: Farm) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    node = await farm.node("r1", render=CPU_NODE)
    sha = await http.upload(FAKE_BLEND, name="shot.blend")
    status, body = await http.call("POST", "/api/v1/render-jobs", json={
        "blend_sha256": sha, "cameras": ["front", "top"], "preview": False, "quality": "final"})
    assert status == 201, body
    assert [j["camera"] for j in body["jobs"]] == ["front", "top"] and body["batch_id"]
    first = await started(node)
    assert first.camera in ("front", "top")
    assert first.denoise is None  # "final" asks for denoising: the file's own setting is kept
    status, body = await http.call("POST", "/api/v1/render-jobs", json={"blend_sha256": sha, "cameras": ["bad\nname"]})
    assert status == 422
