"""Quotes and costs: the cost model over HTTP, a quick quote from a real STL, a precise one from
G-code, and a finished job's actual cost."""

from __future__ import annotations

import io

import pytest
import trimesh

from hub.shop.costing import CostModel, breakdown

from .hubkit import Farm, isolated_farm  # noqa: F401 - fixtures
from .test_farm_queue import ok, run_to_end, setup


def test_breakdown_prices_every_line_and_adds_margin_then_markup() -> None:
    model = CostModel(energy_price_per_kwh=0.5, labour_minutes_per_job=6, labour_rate_per_hour=30,
                      failure_margin_pct=10, markup_pct=50)
    c = breakdown(model, "quick", grams=100, hours=2, machine_model="prusa-mk3s", material="pla")
    lines = {x.item: x.amount for x in c.lines}
    assert lines["material"] == pytest.approx(2.5)  # 100 g at 25/kg
    assert lines["energy"] == pytest.approx(2 * 0.08 * 0.5)  # the MK3S draws 80 W printing
    assert lines["depreciation"] == pytest.approx(2 * 800 / 5000)
    assert lines["labour"] == pytest.approx(3.0)
    subtotal = sum(v for k, v in lines.items() if k not in ("failure margin", "markup"))
    assert c.cost == pytest.approx(subtotal * 1.1, abs=0.01)
    assert c.price == pytest.approx(c.cost * 1.5, abs=0.01)


@pytest.mark.integration
@pytest.mark.both_brokers
async def test_quotes_and_actual_cost_over_http(isolated_farm: Farm) -> None:
    http, node, gcode_sha = await setup(isolated_farm, "a")
    model = await ok(http, "GET", "/api/v1/cost-model")
    model["markup_pct"] = 0
    model["currency"] = "CHF"
    assert (await ok(http, "PUT", "/api/v1/cost-model", json=model))["currency"] == "CHF"
    bad = await http.call("PUT", "/api/v1/cost-model", json={**model, "markup_pct": -1})
    assert bad[0] == 422 and "markup_pct" in bad[1]["detail"]

    stl = io.BytesIO()
    trimesh.creation.box((20, 20, 20)).export(stl, file_type="stl")
    mesh_sha = await http.upload(stl.getvalue(), "cube.stl")
    quick = await ok(http, "POST", "/api/v1/quotes", json={"file_sha256": mesh_sha, "machine_model": "prusa-mk3s"})
    assert quick["kind"] == "quick" and quick["currency"] == "CHF" and 3 < quick["grams"] < 10
    assert quick["price"] == quick["cost"] > 0

    precise = await ok(http, "POST", "/api/v1/quotes", json={"file_sha256": gcode_sha, "material": "PETG"})
    assert precise["kind"] == "precise" and precise["grams"] == pytest.approx(100 * 0.0024053 * 1.27, rel=0.01)

    job = (await ok(http, "POST", "/api/v1/print-jobs", 201, json={"file_sha256": gcode_sha}))["job"]
    assert (await http.call("GET", f"/api/v1/jobs/{job['id']}/cost"))[0] == 409
    await run_to_end(node, await node.command(), extruded_mm=1000.0)
    await http.wait_state(job["id"], "completed")
    actual = await ok(http, "GET", f"/api/v1/jobs/{job['id']}/cost")
    assert actual["kind"] == "actual" and actual["hours"] == pytest.approx(1.0)
    assert actual["grams"] == pytest.approx(1000 * 0.0024053 * 1.24, rel=0.01)


@pytest.mark.integration
async def test_analysis_of_meshes_and_gcode_and_refusal_of_hostile_files(isolated_farm: Farm) -> None:
    http, _node, gcode_sha = await setup(isolated_farm, "a")
    g = await ok(http, "GET", f"/api/v1/files/{gcode_sha}/analysis")
    assert g["kind"] == "gcode" and g["extrusion"][0]["filament_mm"] == pytest.approx(100.0)
    assert g["metadata"]["filament_type"] == ["PETG"] and g["estimate"]["total_s"] > 0

    scene = trimesh.Scene([trimesh.creation.box((10, 10, 10)),
                           trimesh.creation.icosphere().apply_translation((30, 0, 0))])
    sha = await http.upload(scene.export(file_type="3mf"), "two.3mf")
    m = await ok(http, "GET", f"/api/v1/files/{sha}/analysis")
    assert m["kind"] == "mesh" and len(m["objects"]) == 2 and m["watertight"] is True
    assert m["fits"]["prusa-mk3s"] is True and m["triangles"] > 12

    # Refused at upload, with the reason, and not kept.
    status, problem = await http.call("POST", "/api/v1/files", params={"name": "evil.stl"},
                                      data=b"this is not a mesh at all\n" * 10)
    assert status == 422 and "STL" in problem["detail"], problem
    names = [f["name"] for f in (await ok(http, "GET", "/api/v1/files"))["items"]]
    assert "evil.stl" not in names
