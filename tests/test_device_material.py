"""The spool loaded on a printer shows in the device JSON the farm grid reads."""

from __future__ import annotations

import pytest

from .hubkit import Farm, farm  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


async def test_the_loaded_spool_rides_along_with_the_device_and_follows_loads(farm: Farm) -> None:
    hub = await farm.hub()
    node = await farm.node("mk4", "xl")
    http = farm.http(hub)
    filament = (await http.call("POST", "/api/v1/filaments", json={
        "name": "Galaxy Black", "material": "PETG", "color_hex": "1A1A2E", "density": 1.27, "weight": 1000}))[1]
    spool = (await http.call("POST", "/api/v1/spools", json={"filament_id": filament["id"], "used_weight": 250.5}))[1]
    status, body = await http.call("POST", f"/api/v1/devices/{node.id}/mk4/spool", json={"spool_id": spool["id"]})
    assert status == 200, body

    devices = await http.devices()
    assert devices[f"{node.id}/mk4"]["material"] == {
        "spool_id": spool["id"], "material": "PETG", "name": "Galaxy Black", "color_hex": "#1a1a2e",
        "remaining_grams": 749.5}
    assert devices[f"{node.id}/xl"]["material"] is None

    await http.call("POST", f"/api/v1/devices/{node.id}/xl/spool", json={"spool_id": spool["id"]})
    devices = await http.devices()
    assert devices[f"{node.id}/mk4"]["material"] is None, "a spool moved to another printer leaves the first"
    assert devices[f"{node.id}/xl"]["material"]["spool_id"] == spool["id"]
    assert hub.fleet.device(node.id, "xl").material.material == "PETG"  # what the live stream sends
