"""The constrained queue end to end: a real hub, its embedded broker, a scripted node."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.messages import CommandAck, JobCompleted, JobFailed, JobStarted, StartJob

from .hubkit import Farm, Http, ScriptedNode, eventually, isolated_farm  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]

# 100 mm of filament fed by a G-code file with metadata a slicer would write.
GCODE = b"; filament_type = PETG\nG28\nG92 E0\nG1 X10 Y10 Z0.2 F3000\nG1 X60 E60\nG1 Y40 E100\n"


async def setup(farm: Farm, *devices: str) -> tuple[Http, ScriptedNode, str]:
    hub = await farm.hub()
    http = farm.http(hub)
    node = await farm.node(*devices)

    async def knows() -> bool:
        found = await http.devices()
        return all(found.get(f"{node.id}/{d}", {}).get("state") == "idle" for d in devices)
    await eventually(knows, "the hub to see the node's devices")
    return http, node, await http.upload(GCODE, "part.gcode")


async def ok(http: Http, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    got, body = await http.call(method, path, **kw)
    assert got == status, body
    return body


async def spool(http: Http, material: str, color: str, grams: float) -> int:
    vendor = await ok(http, "POST", "/api/v1/vendors", 201, json={"name": f"V{material}{color}{grams}"})
    filament = await ok(http, "POST", "/api/v1/filaments", 201, json={
        "vendor_id": vendor["id"], "material": material, "color_hex": color, "density": 1.27, "weight": 1000,
        "price": 25})
    return (await ok(http, "POST", "/api/v1/spools", 201, json={"filament_id": filament["id"],
                                                                "initial_weight": grams}))["id"]


async def run_to_end(node: ScriptedNode, start: StartJob, extruded_mm: float = 100.0) -> None:
    await node.event(CommandAck(command_id=start.command_id, status="accepted"))
    await node.event(JobStarted(device=start.device, job_id=start.job_id, lines_total=6))
    await node.event(JobCompleted(device=start.device, job_id=start.job_id, duration_s=3600.0, lines=6, resends=0,
                                  extruded_mm=extruded_mm))


async def test_a_job_goes_to_the_printer_loaded_with_its_material_and_books_what_it_used(isolated_farm: Farm) -> None:
    http, node, sha = await setup(isolated_farm, "a", "b")
    pla, petg = await spool(http, "PLA", "#000000", 1000), await spool(http, "PETG", "#FF8000", 120)
    await ok(http, "POST", f"/api/v1/devices/{node.id}/a/spool", json={"spool_id": pla})
    await ok(http, "POST", f"/api/v1/devices/{node.id}/b/spool", json={"spool_id": petg})

    made = await ok(http, "POST", "/api/v1/print-jobs", 201, json={"file_sha256": sha, "material": "petg",
                                                                   "color": "ff8000"})
    assert made["requirements"]["filament_mm"] == pytest.approx(100.0)
    start = await node.command()
    assert isinstance(start, StartJob) and start.device == "b"
    await run_to_end(node, start, extruded_mm=1000.0)  # 1000 mm of 1.75 mm PETG ≈ 3.05 g

    async def booked() -> Any:
        s = await ok(http, "GET", f"/api/v1/spools/{petg}")
        return s if s["used_weight"] > 0 else None
    used = await eventually(booked, "the filament to be booked")
    assert used["used_weight"] == pytest.approx(3.05, abs=0.01)
    assert used["remaining_weight"] == pytest.approx(120 - 3.05, abs=0.01)
    assert (await ok(http, "GET", "/api/v1/alerts"))["items"] == []  # 117 g left: above the 100 g threshold

    second = await ok(http, "POST", "/api/v1/print-jobs", 201, json={"file_sha256": sha, "material": "PETG"})
    start = await node.command()
    assert start.job_id == str(second["job"]["id"])
    await run_to_end(node, start, extruded_mm=6000.0)  # ≈ 18.3 g: under the threshold now
    alerts = await eventually(lambda: _alerts(http), "a low-stock alert")
    assert [a["subject"] for a in alerts] == [f"spool/{petg}"] and "g left" in alerts[0]["message"]


async def _alerts(http: Http) -> list[dict[str, Any]]:
    return (await ok(http, "GET", "/api/v1/alerts"))["items"]


async def test_a_printer_with_an_operator_profile_waits_for_bed_clear(isolated_farm: Farm) -> None:
    http, node, sha = await setup(isolated_farm, "a")
    await ok(http, "PUT", f"/api/v1/devices/{node.id}/a/profile", json={"auto_eject": False})
    first = (await ok(http, "POST", "/api/v1/print-jobs", 201, json={"file_sha256": sha}))["job"]
    start = await node.command()
    await run_to_end(node, start)
    await http.wait_state(first["id"], "completed")
    second = (await ok(http, "POST", "/api/v1/print-jobs", 201, json={"file_sha256": sha}))["job"]
    profile = await ok(http, "GET", f"/api/v1/devices/{node.id}/a/profile")
    assert profile["awaiting_bed_clear"] is True
    assert (await http.job(second["id"]))["state"] == "queued"
    await ok(http, "POST", f"/api/v1/devices/{node.id}/a/bed-cleared")
    start = await node.command()
    assert start.job_id == str(second["id"])


async def test_a_spool_too_short_for_the_job_keeps_it_off_that_printer(isolated_farm: Farm) -> None:
    http, node, sha = await setup(isolated_farm, "a")
    short = await spool(http, "PLA", "#000000", 0.1)  # ≈ 33 mm of filament; the job needs 100 mm
    await ok(http, "POST", f"/api/v1/devices/{node.id}/a/spool", json={"spool_id": short})
    job = (await ok(http, "POST", "/api/v1/print-jobs", 201, json={"file_sha256": sha}))["job"]
    assert isolated_farm.hubs[-1].scheduler.run_once() == 0
    assert (await http.job(job["id"]))["state"] == "queued"
    await ok(http, "POST", f"/api/v1/devices/{node.id}/a/spool", json={"spool_id": None})
    assert (await node.command()).job_id == str(job["id"])


async def test_a_job_that_names_a_material_waits_while_its_printer_has_no_spool_loaded(isolated_farm: Farm) -> None:
    http, node, sha = await setup(isolated_farm, "a")
    job = (await ok(http, "POST", "/api/v1/print-jobs", 201, json={"file_sha256": sha, "material": "PETG"}))["job"]
    assert isolated_farm.hubs[-1].scheduler.run_once() == 0
    assert (await http.job(job["id"]))["state"] == "queued" and node.commands.empty()
    waiting = (await ok(http, "GET", f"/api/v1/jobs/{job['id']}/requirements"))["waiting_for"]
    assert waiting == [f"{node.id}/a: needs PETG loaded; no spool is loaded"]
    petg = await spool(http, "PETG", "#FF8000", 1000)
    await ok(http, "POST", f"/api/v1/devices/{node.id}/a/spool", json={"spool_id": petg})
    assert (await node.command()).job_id == str(job["id"])
    assert (await ok(http, "GET", f"/api/v1/jobs/{job['id']}/requirements"))["waiting_for"] == []


async def test_held_jobs_wait_for_release_and_failed_jobs_are_retried(isolated_farm: Farm) -> None:
    http, node, sha = await setup(isolated_farm, "a")
    job = (await ok(http, "POST", "/api/v1/print-jobs", 201,
                    json={"file_sha256": sha, "hold": True, "retries": 1}))["job"]
    assert isolated_farm.hubs[-1].scheduler.run_once() == 0
    await ok(http, "POST", f"/api/v1/jobs/{job['id']}/release")
    start = await node.command()
    await node.event(CommandAck(command_id=start.command_id, status="accepted"))
    await node.event(JobStarted(device="a", job_id=start.job_id, lines_total=6))
    await node.event(JobFailed(device="a", job_id=start.job_id, reason="thermal runaway"))
    again = await node.command()
    assert again.job_id == start.job_id and again.command_id == f"start-{job['id']}-1"
    assert "thermal runaway" in (await http.job(job["id"]))["error"]
