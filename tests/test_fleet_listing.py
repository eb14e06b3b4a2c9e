"""The device listing a panel of thousands of printers polls: pages from the hub's kept state, and only
the devices changed since the revision of its last answer."""

from __future__ import annotations

import aiohttp
import pytest

from hub.fleet.schemas import DeviceItems
from protocol import topics
from protocol.messages import DeviceState, Heater, Telemetry

from .authkit import bearer
from .hubkit import Farm, eventually, isolated_farm  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


async def test_devices_changed_since_a_revision_are_all_a_poll_gets(isolated_farm: Farm) -> None:
    farm = isolated_farm
    hub = await farm.hub()
    http = farm.http(hub)
    node = await farm.node("a", "b", "c")

    async def settled() -> dict | None:
        body = (await http.call("GET", "/api/v1/devices", params={"node": node.id}))[1]
        return body if [(d["id"], d["state"]) for d in body["items"]] == [("a", "idle"), ("b", "idle"),
                                                                          ("c", "idle")] else None

    first = await eventually(settled, "the node's devices and their statuses")
    status, nothing = await http.call("GET", "/api/v1/devices", params={"since": str(first["revision"])})
    assert status == 200 and nothing["items"] == [] and nothing["revision"] == first["revision"]

    await node.status("b", DeviceState.PRINTING, job_id="7", progress=0.1)
    await node.publish(topics.device_telemetry(node.id, "c"),
                       Telemetry(device="c", temperatures={"T0": Heater(actual=201.5)}))

    async def changed() -> dict | None:
        body = (await http.call("GET", "/api/v1/devices", params={"since": str(first["revision"])}))[1]
        return body if len(body["items"]) == 2 else None

    body = await eventually(changed, "b's status and c's telemetry")
    b, c = body["items"]
    assert (b["id"], b["state"], b["job_id"]) == ("b", "printing", "7")
    assert (c["id"], c["temperatures"]["T0"]["actual"]) == ("c", 201.5)
    assert body["revision"] > first["revision"]

    status, page = await http.call("GET", "/api/v1/devices", params={"node": node.id, "limit": "2"})
    assert [d["id"] for d in page["items"]] == ["a", "b"] and page["next"] == "2"
    status, problem = await http.call("GET", "/api/v1/devices", params={"since": "yesterday"})
    assert status == 422 and "since" in problem["detail"]


async def test_a_panel_gets_a_devices_telemetry_coalesced_not_message_by_message(isolated_farm: Farm) -> None:
    farm = isolated_farm
    hub = await farm.hub()
    node = await farm.node("a")
    async with aiohttp.ClientSession(headers=bearer("viewer")) as s:
        async with s.ws_connect(f"{hub.http_url}/api/v1/live") as ws:
            await ws.send_json({"subscribe": ["devices"]})
            assert (await ws.receive_json(timeout=10))["subscribed"] == ["devices"]
            for n in range(30):
                await node.publish(topics.device_telemetry(node.id, "a"),
                                   Telemetry(device="a", temperatures={"T0": Heater(actual=100.0 + n)}))
            updates: list[dict] = []
            while not updates or updates[-1]["data"]["temperatures"]["T0"]["actual"] != 129.0:
                updates += await ws.receive_json(timeout=10)
            assert all(u["key"] == f"{node.id}/a" for u in updates)
            assert len(updates) < 10, "thirty readings reach the panel as a few updates, the last one last"


async def test_a_listing_page_is_the_device_models_as_json(isolated_farm: Farm) -> None:
    """The page is written from each device's kept JSON, not from models: it must say what the models say."""
    farm = isolated_farm
    hub = await farm.hub()
    http = farm.http(hub)
    node = await farm.node("a", "b")
    await node.status("a", DeviceState.PRINTING, job_id="7", progress=0.25, temperatures={"T0": Heater(actual=24.0)})
    await node.publish(topics.device_telemetry(node.id, "b"),
                       Telemetry(device="b", temperatures={"T0": Heater(actual=199.5, target=215.0)}, progress=0.5))

    async def settled() -> dict | None:
        body = (await http.call("GET", "/api/v1/devices", params={"node": node.id}))[1]
        states = {d["id"]: (d["state"], d["temperatures"].get("T0", {}).get("actual")) for d in body["items"]}
        return body if states == {"a": ("printing", 24.0), "b": ("idle", 199.5)} else None

    body = await eventually(settled, "a's status and b's telemetry")
    assert DeviceItems.model_validate(body).items == [d for d in hub.fleet.devices() if d.node == node.id]
