"""The farm grid's feed (hub/tile_feed.py): the whole farm in one read, then each device's latest change,
coalesced — a burst of readings reaches a panel as one message with the newest — and telemetry history
still reaches the database (its rows are committed in batches)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from protocol import topics
from protocol.messages import DeviceState, Heater, Telemetry

from .authkit import bearer
from .hubkit import Farm, eventually, isolated_farm  # noqa: F401 - fixtures


async def test_a_burst_of_readings_reaches_the_grid_as_one_message_with_the_newest(isolated_farm: Farm) -> None:  # noqa: F811
    farm = isolated_farm
    hub = await farm.hub()
    node = await farm.node("mk4", "mini")
    await node.status("mk4", DeviceState.PRINTING, progress=0.1)
    http = farm.http(hub, "viewer")
    status, tiles = await http.call("GET", "/api/v1/tiles")
    assert status == 200
    assert {d["ref"] for d in tiles["items"]} == {f"{node.id}/mk4", f"{node.id}/mini"}

    async with aiohttp.ClientSession(headers=bearer("viewer")) as s, s.ws_connect(f"{hub.http_url}/api/v1/live") as ws:
        await ws.send_json({"subscribe": ["tiles"]})
        assert (await ws.receive_json(timeout=10))["subscribed"] == ["tiles"]
        for step in range(1, 11):
            await node.publish(topics.device_telemetry(node.id, "mk4"), Telemetry(
                device="mk4", progress=step / 10, remaining_s=600 - step,
                temperatures={"T0": Heater(actual=200 + step, target=215)}))
        messages: list[dict] = []  # type: ignore[type-arg]
        seen: list[float] = []
        while not seen or seen[-1] != 1.0:
            for msg in await ws.receive_json(timeout=10):
                messages.append(msg)
                seen += [d["progress"] for d in msg["data"]["devices"] if d["ref"] == f"{node.id}/mk4"]
        with pytest.raises(asyncio.TimeoutError):  # nothing more comes after the newest
            await ws.receive_json(timeout=hub.surface.tiles.interval_s * 3)
        newest = messages[-1]["data"]["devices"][-1]
    assert messages[0]["topic"] == "tiles"
    assert len(seen) < 10, seen  # coalesced: fewer messages than readings
    assert newest["temperatures"]["T0"]["actual"] == 210 and newest["remaining_s"] == 590
    await http.close()


async def test_telemetry_history_reaches_the_database(isolated_farm: Farm) -> None:  # noqa: F811
    farm = isolated_farm
    hub = await farm.hub(telemetry_history_interval_s=0.0)
    node = await farm.node("mk4")
    for step in range(3):
        await node.publish(topics.device_telemetry(node.id, "mk4"), Telemetry(device="mk4", progress=step / 10))
        await asyncio.sleep(0.6)

    def samples() -> int:
        return hub.store.db.execute("SELECT COUNT(*) FROM telemetry WHERE device = 'mk4'").fetchone()[0]

    await eventually(lambda: samples() >= 1, "telemetry samples in the history table")
    assert not hub.ingest.counts["errors"]
