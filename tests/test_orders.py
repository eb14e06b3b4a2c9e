"""Orders end to end on a hub with its embedded broker and a scripted node, and reports on seeded data."""

from __future__ import annotations

from typing import Any

import pytest
import trimesh

from protocol.messages import StartJob

from .prerequisites import needs_program
from .hubkit import Farm, Http, ScriptedNode, eventually, isolated_farm  # noqa: F401 - fixtures
from .test_farm_queue import GCODE, ok, run_to_end, spool

pytestmark = [
    pytest.mark.integration,
    pytest.mark.both_brokers,
    needs_program("prusa-slicer"),
]


async def mk4_farm(farm: Farm) -> tuple[Http, ScriptedNode]:
    hub = await farm.hub()
    http = farm.http(hub)
    node = await farm.node("a", "b", model="prusa-mk4")

    async def knows() -> bool:
        found = await http.devices()
        return all(found.get(f"{node.id}/{d}", {}).get("state") == "idle" for d in ("a", "b"))
    await eventually(knows, "the hub to see the node's printers")
    for grams, device in enumerate(("a", "b"), 1000):
        pla = await spool(http, "PLA", "#000000", grams)
        await ok(http, "POST", f"/api/v1/devices/{node.id}/{device}/spool", json={"spool_id": pla})
    return http, node


async def order(http: Http, order_id: int) -> dict[str, Any]:
    return await ok(http, "GET", f"/api/v1/orders/{order_id}")


async def test_an_order_becomes_jobs_prints_and_goes_through_its_stages(isolated_farm: Farm) -> None:
    http, node = await mk4_farm(isolated_farm)
    gcode = await http.upload(GCODE, "bracket.gcode")
    mesh = await http.upload(trimesh.creation.box((12, 12, 4)).export(file_type="stl"), "spacer.stl")
    made = await ok(http, "POST", "/api/v1/orders", 201, json={
        "customer": "Acme", "reference": "PO-17", "stages": ["support_removal", "qc"],
        "items": [{"file_sha256": gcode, "copies": 2},
                  {"file_sha256": mesh, "copies": 2, "material": "pla", "notes": "matte side up"}]})
    assert made["status"] == "draft"  # the mesh is being sliced
    gcode_item, mesh_item = made["items"]
    assert len(gcode_item["jobs"]) == 2 and mesh_item["jobs"] == [] and mesh_item["machine_model"] == "prusa-mk4"
    status, problem = await http.call("POST", f"/api/v1/orders/{made['id']}/stages/qc")
    assert status == 409 and "printed" in problem["detail"]

    async def all_jobs() -> dict[str, Any] | None:
        o = await order(http, made["id"])
        return o if o["status"] != "draft" else None
    queued = await eventually(all_jobs, "the mesh to be sliced and queued", timeout=60)
    sliced = queued["items"][1]
    assert len(sliced["jobs"]) == 2 and sliced["gcode_sha256"] not in (None, mesh) and sliced["error"] is None
    assert queued["status"] in ("queued", "printing")
    reqs = await ok(http, "GET", f"/api/v1/jobs/{sliced['jobs'][0]}/requirements")
    assert reqs["machine_model"] == "prusa-mk4" and reqs["material"] == "PLA" and reqs["order_item_id"] == sliced["id"]

    for _ in range(4):
        start = await node.command(timeout=30)
        assert isinstance(start, StartJob)
        await run_to_end(node, start, extruded_mm=500.0)
    job_ids = gcode_item["jobs"] + sliced["jobs"]
    for job_id in job_ids:
        await http.wait_state(job_id, "completed")

    printed = await order(http, made["id"])
    assert printed["status"] == "printed" and printed["jobs"] == {"completed": 4}
    actual = [(await ok(http, "GET", f"/api/v1/jobs/{j}/cost"))["cost"] for j in job_ids]
    cost = printed["cost"]
    assert cost["actual_cost"] == pytest.approx(sum(actual), abs=0.02) and cost["cost"] == cost["actual_cost"]
    assert cost["quoted_cost"] > 0 and cost["price"] == pytest.approx(
        sum(i["quoted_price"] for i in printed["items"]), abs=0.01)
    assert cost["margin"] == pytest.approx(cost["price"] - cost["cost"], abs=0.01)

    status, problem = await http.call("POST", f"/api/v1/orders/{made['id']}/stages/painting")
    assert status == 422 and "support_removal" in problem["detail"]
    after = await ok(http, "POST", f"/api/v1/orders/{made['id']}/stages/support_removal", json={"notes": "ok"})
    assert after["status"] == "post-processing"
    assert after["stages_done"][0]["by"] == "test-admin" and after["stages_done"][0]["notes"] == "ok"
    done = await ok(http, "POST", f"/api/v1/orders/{made['id']}/stages/qc")
    assert done["status"] == "done" and [s["stage"] for s in done["stages_done"]] == ["support_removal", "qc"]
    listed = await ok(http, "GET", "/api/v1/orders", params={"status": "done"})
    assert [o["id"] for o in listed["items"]] == [made["id"]]


async def test_an_order_no_machine_can_print_is_refused_whole_and_cancel_stops_jobs(isolated_farm: Farm) -> None:
    http, _node = await mk4_farm(isolated_farm)
    gcode = await http.upload(GCODE, "bracket.gcode")
    plate = await http.upload(trimesh.creation.box((300, 300, 4)).export(file_type="stl"), "plate.stl")
    status, problem = await http.call("POST", "/api/v1/orders", json={
        "customer": "Acme", "items": [{"file_sha256": gcode}, {"file_sha256": plate}]})
    assert status == 422 and "item 2" in problem["detail"] and "prusa-mk4: " in problem["detail"]
    assert "does not fit" in problem["detail"]
    assert (await ok(http, "GET", "/api/v1/orders"))["items"] == []  # nothing half-made

    # PETG is loaded nowhere: the job waits in the queue until the order is cancelled.
    waiting = await ok(http, "POST", "/api/v1/orders", 201, json={
        "customer": "Bob", "items": [{"file_sha256": gcode, "material": "PETG"}]})
    assert waiting["status"] == "queued"
    cancelled = await ok(http, "POST", f"/api/v1/orders/{waiting['id']}/cancel")
    assert cancelled["status"] == "cancelled" and cancelled["jobs"] == {"cancelled": 1}
    assert cancelled["cost"]["cost"] == 0
    status, _ = await http.call("POST", f"/api/v1/orders/{waiting['id']}/cancel")
    assert status == 409


DAY = "2030-01-01T{}:00:00.000+00:00"


def seed_jobs(farm: Farm, sha: str, spools: tuple[int, int]) -> None:
    """Three printed jobs on one node, at known times, and the filament booked for them."""
    db = farm.hubs[-1].store.db
    db.execute("INSERT INTO nodes (id, online, updated_at) VALUES ('n1', 0, ?)", (DAY.format("00"),))
    for dev in ("a", "b"):
        db.execute("INSERT INTO devices (node, id, kind, model, listed, updated_at)"
                   " VALUES ('n1', ?, 'serial_gcode', 'prusa-mk4', 1, ?)", (dev, DAY.format("00")))
    jobs = [("a", DAY.format("10"), DAY.format("12")),  # 2 h
            ("a", DAY.format("23"), "2030-01-02T01:00:00.000+00:00"),  # 1 h inside the day
            ("b", "2029-12-31T23:30:00.000+00:00", "2030-01-01T00:30:00.000+00:00")]  # 0.5 h inside
    for n, (dev, began, ended) in enumerate(jobs):
        job_id = db.execute(
            "INSERT INTO jobs (name, file_sha256, state, node, device, created_at, started_at, finished_at,"
            " duration_s) VALUES ('seeded', ?, 'completed', 'n1', ?, ?, ?, ?, 3600)",
            (sha, dev, began, began, ended)).lastrowid
        grams, spool_id = [(40.0, spools[0]), (15.0, spools[0]), (7.5, spools[1])][n]
        db.execute("INSERT INTO spool_usage (job_id, attempt, spool_id, grams, booked_at) VALUES (?, 0, ?, ?, ?)",
                   (job_id, spool_id, grams, ended))


async def test_reports_sum_printing_time_filament_and_orders(isolated_farm: Farm) -> None:
    hub = await isolated_farm.hub()
    http = isolated_farm.http(hub)
    sha = await http.upload(GCODE, "bracket.gcode")
    spools = await spool(http, "PLA", "#000000", 1000), await spool(http, "PETG", "#FF8000", 1000)
    seed_jobs(isolated_farm, sha, spools)
    day = {"from": "2030-01-01T00:00:00Z", "to": "2030-01-02T00:00:00Z"}

    use = await ok(http, "GET", "/api/v1/reports/utilisation", params=day)
    by_device = {p["device"]: p for p in use["printers"]}
    assert by_device["n1/a"]["printing_hours"] == pytest.approx(3.0) and by_device["n1/a"]["jobs"] == 2
    assert by_device["n1/a"]["utilisation"] == pytest.approx(3 / 24, abs=1e-4)
    assert by_device["n1/b"]["printing_hours"] == pytest.approx(0.5) and by_device["n1/b"]["period_hours"] == 24

    used = await ok(http, "GET", "/api/v1/reports/materials", params=day)
    # Filament counts on the day it was booked: when its job ended (the second PLA job ended the next day).
    assert used["materials"] == [{"material": "PLA", "color": "000000", "grams": 40.0, "jobs": 1},
                                 {"material": "PETG", "color": "FF8000", "grams": 7.5, "jobs": 1}]
    assert used["total_grams"] == 47.5

    # The same day in 7-hour buckets (the last one 3 h): the dashboard's charts.
    line = await ok(http, "GET", "/api/v1/reports/timeline", params={**day, "every": "25200"})
    assert line["printers"] == 2 and [b["hours"] for b in line["buckets"]] == [7, 7, 7, 3]
    assert [b["printing_hours"] for b in line["buckets"]] == pytest.approx([0.5, 2.0, 0.0, 1.0])
    assert [b["utilisation"] for b in line["buckets"]] == pytest.approx([0.5 / 14, 2 / 14, 0, 1 / 6], abs=1e-4)
    assert [b["grams"] for b in line["buckets"]] == [{"PETG": 7.5}, {"PLA": 40.0}, {}, {}]
    for bad, says in (({"every": "10"}, "every"), ({"from": "2020-01-01T00:00:00Z", "every": "60"}, "buckets")):
        status, problem = await http.call("GET", "/api/v1/reports/timeline", params={**day, **bad})
        assert status == 422 and says in problem["detail"], problem

    quote = (await ok(http, "POST", "/api/v1/quotes", json={"file_sha256": sha}))["cost"]
    for customer, price in (("Acme", 10.0), ("Acme", 20.0), ("Bob", 5.0)):
        o = await ok(http, "POST", "/api/v1/orders", 201, json={"customer": customer, "price": price,
                                                                 "items": [{"file_sha256": sha}]})
    await ok(http, "POST", f"/api/v1/orders/{o['id']}/cancel")
    report = await ok(http, "GET", "/api/v1/reports/orders")
    assert report["total"]["count"] == 3 and report["total"]["revenue"] == 35.0
    acme, bob = report["by_customer"]["Acme"], report["by_customer"]["Bob"]
    assert acme["count"] == 2 and acme["revenue"] == 30.0 and acme["cost"] == pytest.approx(2 * quote, abs=0.02)
    assert acme["margin"] == pytest.approx(30.0 - 2 * quote, abs=0.02)
    assert bob == {"count": 1, "revenue": 5.0, "cost": 0.0, "margin": 5.0}
    assert report["by_status"]["queued"]["count"] == 2 and report["by_status"]["cancelled"]["count"] == 1

    status, problem = await http.call("GET", "/api/v1/reports/utilisation", params={"from": "yesterday"})
    assert status == 422 and "from" in problem["detail"]
    status, problem = await http.call("GET", "/api/v1/reports/materials", params={"from": day["to"], "to": day["from"]})
    assert status == 422 and "before" in problem["detail"]
