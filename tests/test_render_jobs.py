"""Render jobs end to end: the hub, real agents with real Blender, a private Mosquitto, a scene made here.

The scene is tests/render_scene.py's cube (64x48, Cycles on the CPU); a task
costs about a second, most of it Blender starting.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from .conftest import PrivateMosquitto
from .render_kit import RenderRig, broken_blender
from .render_scene import blender_or_skip, make_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    blender = blender_or_skip()
    return make_scene(tmp_path_factory.mktemp("scene") / "cube.blend", blender=blender, frame_end=6)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blender_processes(marker: Path) -> list[int]:
    """Live processes whose command line names ``marker`` (an agent's storage folder)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(marker).encode() in cmdline.read_bytes():
                state = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state not in ("Z", "X"):
                    pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


@pytest.mark.integration
async def test_preview_first_retry_elsewhere_and_outputs_match(
        scene: Path, tmp_path: Path, private_mosquitto: PrivateMosquitto) -> None:
    broken = broken_blender(tmp_path)
    async with RenderRig(tmp_path, private_mosquitto.url, ["blender", str(broken)]) as rig:
        blend = await rig.upload_blend(scene)
        submitted = await rig.submit(blend_sha256=blend, frame_start=1, frame_end=6, quality="draft", samples=4,
                                     chunk_size=2, max_node_failures=1)
        job_id = submitted["jobs"][0]["id"]
        job = await rig.wait_job(job_id, {"completed", "failed"})
        assert job["state"] == "completed", job
        assert job["frames_done"] == 6 and job["progress"] == 1.0 and job["preview_done"]

        good, bad = (f"{n}/r1" for n in rig.node_ids)
        kinds = [t["kind"] for t in job["tasks"]]
        assert kinds == ["preview"] * 3 + ["frames"] * 3
        # The broken node got a task, failed it, and someone else rendered it; then it was kept off the job.
        retried = [t for t in job["tasks"] if t["attempt"] > 0]
        assert retried and all(t["device"] == good for t in job["tasks"])
        assert "illegal memory access" in retried[0]["error"]

        status, listing = await rig.http.call("GET", f"/api/v1/render-jobs/{job_id}/outputs")
        assert status == 200
        outputs = listing["items"]
        previews = [o for o in outputs if o["preview"]]
        finals = [o for o in outputs if not o["preview"]]
        assert [o["frame"] for o in previews] == [1, 3, 6]
        assert [o["frame"] for o in finals] == [1, 2, 3, 4, 5, 6]
        assert max(o["created_at"] for o in previews) < min(o["created_at"] for o in finals)
        assert all(o["render_s"] is not None and o["device"] == good for o in outputs)

        status, one = await rig.http.call("GET", f"/api/v1/render-jobs/{job_id}/outputs/4")
        assert status == 200 and one.startswith(b"\x89PNG") and sha(one) == finals[3]["sha256"]
        status, small = await rig.http.call("GET", f"/api/v1/render-jobs/{job_id}/outputs/3?preview=true")
        assert status == 200 and sha(small) == previews[1]["sha256"] and len(small) < len(one)
        status, packed = await rig.http.call("GET", f"/api/v1/render-jobs/{job_id}/outputs.zip")
        assert status == 200
        with zipfile.ZipFile(io.BytesIO(packed)) as archive:
            assert archive.testzip() is None
            assert {name: sha(archive.read(name)) for name in archive.namelist()} == {
                f"frame_{o['frame']:06d}.png": o["sha256"] for o in finals}

        status, cost = await rig.http.call("GET", f"/api/v1/render-jobs/{job_id}/cost")
        assert status == 200 and cost["final"]
        assert cost["estimate"]["total"] > 0 and cost["estimated_frame_s"] > 0
        assert cost["actual"]["total"] > 0 and [line["node_class"] for line in cost["actual"]["lines"]] == ["cpu"]


@pytest.mark.integration
async def test_cancel_stops_the_running_blender(scene: Path, tmp_path: Path,
                                                private_mosquitto: PrivateMosquitto) -> None:
    async with RenderRig(tmp_path, private_mosquitto.url, ["blender"]) as rig:
        blend = await rig.upload_blend(scene)
        # Many samples on every frame: minutes of rendering, stopped after a second or two.
        job_id = (await rig.submit(blend_sha256=blend, frame_start=1, frame_end=6, samples=4000, resolution_pct=400,
                                   preview=False, chunk_size=6))["jobs"][0]["id"]
        storage = tmp_path / rig.node_ids[0]

        async def rendering() -> bool:
            job = await rig.job(job_id)
            return job["tasks"][0]["state"] == "running" and bool(blender_processes(storage))

        deadline = asyncio.get_running_loop().time() + 30
        while not await rendering():
            assert asyncio.get_running_loop().time() < deadline, await rig.job(job_id)
            await asyncio.sleep(0.1)

        status, body = await rig.http.call("POST", f"/api/v1/render-jobs/{job_id}/cancel")
        assert status in (200, 202) and body["cancel_requested"]
        job = await rig.wait_job(job_id, {"cancelled"}, timeout=20)
        assert [t["state"] for t in job["tasks"]] == ["cancelled"]
        assert blender_processes(storage) == []
        status, body = await rig.http.call("POST", f"/api/v1/render-jobs/{job_id}/resume")
        assert status == 409


@pytest.mark.integration
async def test_bad_submissions_are_refused_with_reasons(tmp_path: Path, private_mosquitto: PrivateMosquitto) -> None:
    async with RenderRig(tmp_path, private_mosquitto.url, []) as rig:
        not_blend = await rig.http.upload(b"G28\n", name="part.gcode")
        for fields, says in [
            ({"blend_sha256": not_blend}, "is not a .blend file"),
            ({"blend_sha256": "0" * 64}, "upload the .blend first"),
            ({"blend_sha256": not_blend, "frame_start": 5, "frame_end": 2}, "before frame_start"),
            ({"blend_sha256": not_blend, "cameras": [""]}, "cameras.0"),
            ({}, "give blend_sha256"),
        ]:
            status, body = await rig.http.call("POST", "/api/v1/render-jobs", json=fields)
            assert status == 422 and says in body["detail"], (fields, body)
        status, body = await rig.http.call("POST", "/api/v1/render-jobs", data=b"{not json")
        assert status == 422 and body["title"] == "Invalid render job"
        status, body = await rig.http.call("GET", "/api/v1/render-jobs", params={"state": "lost"})
        assert status == 422 and body["title"] == "Invalid filter" and "queued" in body["detail"], body
        status, body = await rig.http.call("GET", "/api/v1/render-jobs")
        assert status == 200 and body["items"] == []
