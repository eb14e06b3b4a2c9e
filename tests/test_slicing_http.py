"""Slicing over HTTP with the real PrusaSlicer: jobs end to end, the slicer's words, cancel, profiles, quotes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trimesh

from .prerequisites import needs_program
from .hubkit import Farm, Http, eventually, isolated_farm  # noqa: F401 - fixtures
from .test_slicer import slicers_running

pytestmark = [
    pytest.mark.integration,
    needs_program("prusa-slicer"),
]


def stl(mesh: trimesh.Trimesh) -> bytes:
    return mesh.export(file_type="stl")


async def ok(http: Http, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    got, body = await http.call(method, path, **kw)
    assert got == status, body
    return body


async def ended(http: Http, slice_id: int) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        job = await ok(http, "GET", f"/api/v1/slice/{slice_id}")
        return job if job["state"] not in ("queued", "running") else None
    return await eventually(check, f"slice job {slice_id} to end", timeout=60)


async def start(farm: Farm) -> Http:
    return farm.http(await farm.hub())


async def test_a_slice_job_stores_gcode_made_for_its_machine_and_is_reused(isolated_farm: Farm) -> None:
    http = await start(isolated_farm)
    mesh = await http.upload(stl(trimesh.creation.box((12, 12, 4))), "block.stl")
    request = {"mesh_sha256": mesh, "machine_model": "prusa-mk4", "material": "petg", "quality": "0.20mm"}
    job = await ok(http, "POST", "/api/v1/slice", 202, json=request)
    assert job["state"] in ("queued", "running") and job["gcode_sha256"] is None
    done = await ended(http, job["id"])
    assert done["state"] == "done" and done["error"] is None, done

    gcode = await ok(http, "GET", done["gcode_url"])
    assert b"; filament_type = PETG" in gcode and b"G1" in gcode
    analysis = await ok(http, "GET", f"/api/v1/files/{done['gcode_sha256']}/analysis")
    assert analysis["kind"] == "gcode" and analysis["layers"] == 20 and analysis["estimate"]["total_s"] > 0

    again = await ok(http, "POST", "/api/v1/slice", 200, json=request)
    assert again["id"] == job["id"]  # same inputs: not sliced twice

    # The queue knows the G-code was made for an MK4 and requires that machine model.
    queued = await ok(http, "POST", "/api/v1/print-jobs", 201, json={"file_sha256": done["gcode_sha256"]})
    assert queued["requirements"]["machine_model"] == "prusa-mk4"

    # A precise quote of the mesh prices that same G-code instead of slicing again.
    quote = await ok(http, "POST", "/api/v1/quotes", json={
        "file_sha256": mesh, "machine_model": "prusa-mk4", "material": "PETG", "quality": "0.20mm", "copies": 3})
    assert quote["kind"] == "precise" and quote["gcode_sha256"] == done["gcode_sha256"]
    assert quote["grams"] > 0 and quote["price"] > quote["cost"] > 0
    quick = await ok(http, "POST", "/api/v1/quotes", json={"file_sha256": mesh, "machine_model": "prusa-mk4",
                                                           "material": "PETG"})
    assert quick["kind"] == "quick"


async def test_what_cannot_be_sliced_is_refused_before_the_slicer_runs(isolated_farm: Farm) -> None:
    http = await start(isolated_farm)
    mesh = await http.upload(stl(trimesh.creation.box((300, 300, 5))), "plate.stl")
    gcode = await http.upload(b"G28\nG1 X10 E1\n", "part.gcode")
    cases = [
        ({"mesh_sha256": mesh, "machine_model": "prusa-mk3s"}, "does not fit"),
        ({"mesh_sha256": mesh, "machine_model": "no-such-printer"}, "no machine model 'no-such-printer'"),
        ({"mesh_sha256": mesh, "machine_model": "voron-2.4-350", "quality": "ultra"}, "no quality profile 'ultra'"),
        ({"mesh_sha256": gcode, "machine_model": "prusa-mk4"}, "only STL, 3MF and OBJ"),
    ]
    for request, reason in cases:
        status, problem = await http.call("POST", "/api/v1/slice", json=request)
        assert status == 422 and reason in problem["detail"], (request, problem)


async def test_the_slicers_error_reaches_the_job_verbatim(isolated_farm: Farm) -> None:
    http = await start(isolated_farm)
    # A layer that empties layer_gcode: PrusaSlicer refuses relative E without a reset each layer.
    await ok(http, "POST", "/api/v1/slicing-profiles", 201, json={
        "kind": "quality", "name": "no-layer-reset", "ini": "layer_height = 0.2\nlayer_gcode =\n"})
    mesh = await http.upload(stl(trimesh.creation.box((10, 10, 10))), "cube.stl")
    job = await ok(http, "POST", "/api/v1/slice", 202, json={
        "mesh_sha256": mesh, "machine_model": "prusa-mk3s", "quality": "no-layer-reset"})
    failed = await ended(http, job["id"])
    assert failed["state"] == "failed" and failed["gcode_sha256"] is None
    assert "Relative extruder addressing requires resetting the extruder position at each layer" in failed["error"]

    status, problem = await http.call("POST", "/api/v1/quotes", json={
        "file_sha256": mesh, "machine_model": "prusa-mk3s", "quality": "no-layer-reset"})
    assert status == 422 and "Relative extruder addressing" in problem["detail"]


async def test_cancel_kills_the_slicer(isolated_farm: Farm, tmp_path: Path) -> None:
    http = await start(isolated_farm)
    heavy = trimesh.creation.icosphere(subdivisions=6, radius=90)
    mesh = await http.upload(stl(heavy), "heavy.stl")
    job = await ok(http, "POST", "/api/v1/slice", 202, json={"mesh_sha256": mesh, "machine_model": "prusa-mk4"})
    await eventually(lambda: slicers_running(tmp_path), "the slicer to start", timeout=30)

    cancelled = await ok(http, "POST", f"/api/v1/slice/{job['id']}/cancel")
    assert cancelled["state"] == "cancelled" and cancelled["gcode_sha256"] is None
    assert slicers_running(tmp_path) == []
    status, problem = await http.call("POST", f"/api/v1/slice/{job['id']}/cancel")
    assert status == 409 and "cancelled" in problem["detail"]


async def test_profiles_list_shipped_layers_and_refuse_bad_uploads(isolated_farm: Farm) -> None:
    http = await start(isolated_farm)
    bad = [
        ({"kind": "quality", "name": "sections", "ini": "[print:fine]\nlayer_height = 0.1\n"}, "sections"),
        ({"kind": "quality", "name": "upper", "ini": "Layer_Height = 0.1\n"}, "a-z, 0-9 and _"),
        ({"kind": "quality", "name": "dashes", "ini": "layer-height = 0.1\n"}, "a-z, 0-9 and _"),
        ({"kind": "filament", "name": "noeq", "ini": "temperature 215\n"}, "expected 'key = value'"),
        ({"kind": "filament", "name": "twice", "ini": "temperature = 1\ntemperature = 2\n"}, "given twice"),
        ({"kind": "filament", "name": "huge", "ini": "# x\n" * 20_000}, "at most 65536"),
        ({"kind": "filament", "name": "pla", "ini": "temperature = 200\n"}, "exists"),
        ({"kind": "quality", "name": "../../etc", "ini": "layer_height = 0.1\n"}, "name"),
    ]
    for upload, reason in bad:
        status, problem = await http.call("POST", "/api/v1/slicing-profiles", json=upload)
        assert status in (409, 422) and reason in problem["detail"], (upload, problem)

    await ok(http, "POST", "/api/v1/slicing-profiles", 201, json={
        "kind": "quality", "name": "draft-0.28", "ini": "# quick drafts\nlayer_height = 0.28\nfill_density = 10%\n"})
    listed = {p["id"]: p for p in (await ok(http, "GET", "/api/v1/slicing-profiles"))["items"]}
    assert listed["quality/0.20mm"]["source"] == "shipped" and listed["filament/pla"]["source"] == "shipped"
    assert listed["printer/prusa-mk4"]["source"] == "shipped"
    assert listed["quality/draft-0.28"]["source"] == "uploaded" and listed["quality/draft-0.28"]["keys"] == 2
    assert not any(i.startswith(("quality/sections", "filament/huge")) for i in listed)


async def test_slicing_orders_and_reports_are_documented_with_their_models(isolated_farm: Farm) -> None:
    http = await start(isolated_farm)
    doc = await ok(http, "GET", "/api/v1/openapi.json")
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    assert "SliceRequest" in str(paths["/api/v1/slice"]["post"]) and "SliceJob" in schemas
    assert "OrderCreate" in str(paths["/api/v1/orders"]["post"]) and "Order" in schemas
    assert "ProfileUpload" in str(paths["/api/v1/slicing-profiles"]["post"])
    params = {p["name"] for p in paths["/api/v1/reports/utilisation"]["get"]["parameters"]}
    assert {"from", "to"} <= params


async def test_a_slice_cut_off_by_a_hub_stop_runs_again_after_restart(isolated_farm: Farm, tmp_path: Path) -> None:
    hub = await isolated_farm.hub()
    http = isolated_farm.http(hub)
    mesh = await http.upload(stl(trimesh.creation.icosphere(subdivisions=6, radius=90)), "heavy.stl")
    job = await ok(http, "POST", "/api/v1/slice", 202, json={"mesh_sha256": mesh, "machine_model": "prusa-mk4"})
    await eventually(lambda: slicers_running(tmp_path), "the slicer to start", timeout=30)
    await hub.stop()
    assert slicers_running(tmp_path) == []  # the hub took its slicer down with it

    http = isolated_farm.http(await isolated_farm.hub())
    await eventually(lambda: slicers_running(tmp_path), "the slicer to start again", timeout=30)
    again = await ok(http, "GET", f"/api/v1/slice/{job['id']}")
    assert again["state"] == "running"
    await ok(http, "POST", f"/api/v1/slice/{job['id']}/cancel")
