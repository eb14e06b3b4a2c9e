"""The frame grid of a render job: each frame's state as a scripted render node works through it,
and thumbnails only for frames a browser can show cheaply."""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

import aiohttp
import pytest

from hub.app import Hub
from hub.render.frames import THUMB_MAX_BYTES
from protocol.messages import (
    CommandAck,
    FrameRendered,
    RenderCapabilities,
    RenderProgress,
    RenderTaskFailed,
    StartRender,
)

from .authkit import bearer
from .hubkit import Farm, Http, ScriptedNode, eventually, isolated_farm  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]

CPU_NODE = RenderCapabilities(blender_version="4.1.0", engines=["CYCLES"], devices=["CPU"])
FAKE_BLEND = b"BLENDER-v401" + bytes(200)


def png(width: int = 2, height: int = 2, padding: int = 0) -> bytes:
    """A real (tiny, grey) PNG; ``padding`` adds an ancillary chunk to make it big."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    extra = chunk(b"tEXt", b"pad\x00" + b"x" * padding) if padding else b""
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x00\x00\x00\x00"  # 8-bit grey
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + extra + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


async def submit(http: Http, **fields: Any) -> int:
    sha = await http.upload(FAKE_BLEND, name="shot.blend")
    status, body = await http.call("POST", "/api/v1/render-jobs", json={"blend_sha256": sha, **fields})
    assert status == 201, body
    return body["jobs"][0]["id"]


async def start(node: ScriptedNode) -> StartRender:
    body = await node.command()
    assert isinstance(body, StartRender), body
    await node.event(CommandAck(command_id=body.command_id, status="accepted"))
    return body


async def deliver(hub: Hub, node: ScriptedNode, task: StartRender, frame: int, data: bytes) -> None:
    """What a render node does with a finished frame: upload it, then say so."""
    sha = hashlib.sha256(data).hexdigest()
    form = aiohttp.FormData()
    form.add_field("task_id", task.task_id)
    form.add_field("frame", str(frame))
    form.add_field("sha256", sha)
    form.add_field("file", data, filename=f"frame_{frame:04d}.png", content_type="image/png")
    async with aiohttp.ClientSession(headers=bearer("agent")) as s, \
            s.post(f"{hub.http_url}/api/v1/render/outputs", data=form) as r:
        assert r.status == 201, await r.text()
    await node.event(FrameRendered(device=task.device, task_id=task.task_id, frame=frame, render_s=2.0,
                                   output_sha256=sha, output_name=f"frame_{frame:04d}.png"))


async def states(http: Http, job_id: int, query: str = "") -> dict[int, dict[str, Any]]:
    status, body = await http.call("GET", f"/api/v1/render-jobs/{job_id}/frames{query}")
    assert status == 200, body
    return {f["frame"]: f for f in body["frames"]}


async def handled(http: Http, job_id: int, frames_done: int) -> None:
    """Until the hub has taken in the node's FrameRendered events: an event published is not yet handled."""
    async def counted() -> bool:
        status, job = await http.call("GET", f"/api/v1/render-jobs/{job_id}")
        assert status == 200, job
        return sum(t["frames_done"] for t in job["tasks"]) >= frames_done
    await eventually(counted, f"the hub to count {frames_done} frame(s) rendered")


async def test_frames_go_queued_rendering_done_with_thumbnails_for_small_pngs(isolated_farm: Farm) -> None:
    hub = await isolated_farm.hub()
    http = isolated_farm.http(hub, "viewer")
    admin = isolated_farm.http(hub)
    node = await isolated_farm.node("r1", render=CPU_NODE)
    job_id = await submit(admin, frame_start=1, frame_end=4, chunk_size=2, preview=False)
    task = await start(node)
    assert (task.frame_start, task.frame_end) == (1, 2)
    await node.event(RenderProgress(device="r1", task_id=task.task_id, frame=1, samples_done=4, samples_total=64))
    small, big = png(), png(padding=THUMB_MAX_BYTES)
    await deliver(hub, node, task, 1, small)

    await handled(http, job_id, 1)
    frames = await states(http, job_id)
    assert [frames[n]["state"] for n in (1, 2, 3, 4)] == ["done", "rendering", "queued", "queued"]
    assert frames[2]["device"] == f"{node.id}/r1" and frames[3]["device"] is None
    thumb = frames[1]["thumb_url"]
    status, data = await http.call("GET", thumb)
    assert status == 200 and data == small
    async with http.session.get(f"{hub.http_url}{thumb}") as r:
        assert r.content_type == "image/png", "served as an image, so an <img> shows it"

    await deliver(hub, node, task, 2, big)
    await handled(http, job_id, 2)
    frames = await states(http, job_id)
    assert frames[2]["state"] == "done" and frames[2]["thumb_url"] is None and frames[2]["url"]
    status, body = await http.call("GET", f"/api/v1/render-jobs/{job_id}/frames/2/thumb")
    assert status == 404 and body["title"] == "No thumbnail"


async def test_exr_frames_have_no_thumbnail_and_long_jobs_come_in_pages(isolated_farm: Farm) -> None:
    hub = await isolated_farm.hub()
    http = isolated_farm.http(hub)
    node = await isolated_farm.node("r1", render=CPU_NODE)
    job_id = await submit(http, frame_start=10, frame_end=14, chunk_size=5, preview=False, file_format="OPEN_EXR")
    task = await start(node)
    await deliver(hub, node, task, 10, b"v/1\x01" + bytes(64))  # an EXR's magic number: never decoded here
    await handled(http, job_id, 1)
    frames = await states(http, job_id, "?limit=2")
    assert list(frames) == [10, 11] and frames[10]["state"] == "done" and frames[10]["thumb_url"] is None
    status, body = await http.call("GET", f"/api/v1/render-jobs/{job_id}/frames", params={"first": "14"})
    assert [f["frame"] for f in body["frames"]] == [14] and body["next"] is None
    assert (await http.call("GET", f"/api/v1/render-jobs/{job_id}/frames?limit=0"))[0] == 422
    assert (await http.call("GET", "/api/v1/render-jobs/999/frames"))[0] == 404
    assert (await http.call("GET", "/api/v1/render-jobs/999999999999999999999999999999"))[0] == 404

    assert (await http.call("POST", f"/api/v1/render-jobs/{job_id}/cancel"))[0] in (200, 202)
    await node.event(CommandAck(command_id=(await node.command()).command_id, status="done"))
    await node.event(RenderTaskFailed(device="r1", task_id=task.task_id, reason="cancelled", cancelled=True))

    async def cancelled() -> dict[int, dict[str, Any]] | None:
        frames = await states(http, job_id)
        return frames if frames[11]["state"] == "cancelled" else None
    frames = await eventually(cancelled, "the undelivered frames to read cancelled")
    assert frames[10]["state"] == "done", "a delivered frame stays delivered"
