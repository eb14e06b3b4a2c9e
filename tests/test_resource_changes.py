"""PATCH on materials, spools, orders and users: only the fields sent change, each checked as on create;
the change is on disk when the answer comes; unknown ids are 404, conflicts 409, bad values 422."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from .hubkit import Farm, Http, eventually, isolated_farm  # noqa: F401 - fixtures
from .test_farm_queue import GCODE, ok, run_to_end, spool

pytestmark = pytest.mark.integration


async def refused(http: Http, path: str, body: dict[str, Any], status: int, says: str) -> None:
    got, problem = await http.call("PATCH", path, json=body)
    assert got == status and says in problem["detail"], problem


def on_disk(farm: Farm, sql: str, *args: Any) -> tuple[Any, ...]:
    with sqlite3.connect(farm.tmp_path / "hub" / "hub.db") as db:
        return db.execute(sql, args).fetchone()


async def test_materials_and_spools_change_field_by_field(isolated_farm: Farm) -> None:
    hub = await isolated_farm.hub()
    http = isolated_farm.http(hub)
    node = await isolated_farm.node("a")
    spool_id = await spool(http, "PLA", "#000000", 1000)
    filament = (await ok(http, "GET", f"/api/v1/spools/{spool_id}"))["filament"]

    changed = await ok(http, "PATCH", f"/api/v1/filaments/{filament['id']}",
                       json={"name": "Jet Black", "material": "petg", "color_hex": "#101010", "price": None})
    assert (changed["name"], changed["material"], changed["color_hex"], changed["price"]) == \
        ("Jet Black", "PETG", "101010", None)
    assert changed["density"] == filament["density"] and changed["vendor"] == filament["vendor"]  # not sent: kept
    assert on_disk(isolated_farm, "SELECT name, price FROM filaments WHERE id = ?", filament["id"]) == ("Jet Black", None)
    await refused(http, f"/api/v1/filaments/{filament['id']}", {"density": 9}, 422, "density")
    await refused(http, f"/api/v1/filaments/{filament['id']}", {"material": None}, 422, "material")
    await refused(http, f"/api/v1/filaments/{filament['id']}", {"colour": "red"}, 422, "colour")
    await refused(http, "/api/v1/filaments/999", {"name": "x"}, 404, "999")

    weighed = await ok(http, "PATCH", f"/api/v1/spools/{spool_id}", json={"used_weight": 250, "location": "shelf B"})
    assert (weighed["remaining_weight"], weighed["location"], weighed["initial_weight"]) == (750, "shelf B", 1000)
    assert on_disk(isolated_farm, "SELECT used_weight FROM spools WHERE id = ?", spool_id) == (250,)
    await refused(http, f"/api/v1/spools/{spool_id}", {"used_weight": -1}, 422, "used_weight")
    await refused(http, f"/api/v1/spools/{spool_id}", {"initial_weight": None}, 422, "initial_weight")
    await refused(http, f"/api/v1/spools/{spool_id}", {"filament_id": 999}, 404, "999")
    await ok(http, "POST", f"/api/v1/devices/{node.id}/a/spool", json={"spool_id": spool_id})
    await refused(http, f"/api/v1/spools/{spool_id}", {"archived": True}, 409, f"loaded on {node.id}/a")
    await ok(http, "POST", f"/api/v1/devices/{node.id}/a/spool", json={"spool_id": None})
    assert (await ok(http, "PATCH", f"/api/v1/spools/{spool_id}", json={"archived": True}))["archived"] is True

    paths = (await ok(http, "GET", "/api/v1/openapi.json"))["paths"]
    for path, model in (("/api/v1/filaments/{id}", "FilamentChange"), ("/api/v1/spools/{id}", "SpoolChange"),
                        ("/api/v1/orders/{id}", "OrderChange"), ("/api/v1/users/{id}", "UserUpdate")):
        body = paths[path]["patch"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"].endswith(f"/{model}"), (path, body)


async def test_an_order_changes_its_deadline_for_its_queued_jobs_and_keeps_signed_off_stages(
        isolated_farm: Farm) -> None:
    hub = await isolated_farm.hub()
    http = isolated_farm.http(hub)
    sha = await http.upload(GCODE, "part.gcode")
    order = await ok(http, "POST", "/api/v1/orders", 201, json={
        "customer": "Acme", "deadline": "2030-01-01T12:00:00Z", "stages": ["qc", "packed"],
        "items": [{"file_sha256": sha, "copies": 2}]})
    path = f"/api/v1/orders/{order['id']}"

    changed = await ok(http, "PATCH", path, json={"reference": "PO-7", "deadline": "2030-01-02T08:00:00+02:00",
                                                  "price": 12.5})
    assert (changed["customer"], changed["reference"], changed["cost"]["price"]) == ("Acme", "PO-7", 12.5)
    assert changed["deadline"].startswith("2030-01-02T06:00:00")
    assert on_disk(isolated_farm, "SELECT reference FROM orders WHERE id = ?", order["id"]) == ("PO-7",)
    # The order's copies were queued under the old deadline: the scheduler sees the new one.
    for job_id in changed["items"][0]["jobs"]:
        assert (await ok(http, "GET", f"/api/v1/jobs/{job_id}/requirements"))["deadline"] == changed["deadline"]
    await refused(http, path, {"stages": ["qc", "qc"]}, 422, "twice")
    await refused(http, path, {"customer": ""}, 422, "customer")
    await refused(http, path, {"items": []}, 422, "items")
    await refused(http, "/api/v1/orders/999", {"notes": "x"}, 404, "999")

    # Printed, and qc signed off: qc stays in the stages, the rest may change.
    node = await isolated_farm.node("a")
    for _ in range(2):
        await run_to_end(node, await node.command())
    async def printed() -> bool:
        return (await ok(http, "GET", path))["status"] == "printed"
    await eventually(printed, "the order to be printed")
    await ok(http, "POST", f"{path}/stages/qc", json={})
    await refused(http, path, {"stages": ["packed"]}, 409, "qc")
    assert (await ok(http, "PATCH", path, json={"stages": ["qc", "packed", "shipped"]}))["status"] == "post-processing"
    await ok(http, "POST", f"{path}/cancel")
    await refused(http, path, {"notes": "too late"}, 409, "cancelled")


async def test_an_admin_renames_a_user_changes_their_role_and_password_but_keeps_an_admin(
        isolated_farm: Farm) -> None:
    hub = await isolated_farm.hub()
    http = isolated_farm.http(hub)
    users = (await ok(http, "GET", "/api/v1/users"))["items"]
    olga = await ok(http, "POST", "/api/v1/users", 201,
                    json={"username": "olga", "password": "first-password", "role": "viewer"})
    path = f"/api/v1/users/{olga['id']}"
    changed = await ok(http, "PATCH", path, json={"username": "olga.k", "role": "operator",
                                                  "password": "second-password"})
    assert (changed["username"], changed["role"], changed["disabled_at"]) == ("olga.k", "operator", None)
    got, _ = await http.call("POST", "/api/v1/session", json={"username": "olga.k", "password": "second-password"})
    assert got == 200
    await refused(http, path, {"password": "short"}, 422, "password")
    await refused(http, path, {"username": users[0]["username"]}, 409, "exists")
    await refused(http, f"/api/v1/users/{users[0]['id']}", {"role": "operator"}, 409, "last admin")
