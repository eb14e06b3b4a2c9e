"""The outbound event log and its Redis Streams export, against real hubs and a real Redis."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
import redis.asyncio as aioredis

from hub.export.stream_consumer import StreamConsumer

from .exportkit import (  # noqa: F401 - fixtures
    PrivateRedis,
    events,
    private_redis,
    redis_url,
    stream_key,
    submit_many,
)
from .hubkit import Farm, eventually, isolated_farm  # noqa: F401 - fixture

pytestmark = pytest.mark.integration


def export(url: str, stream: str, **redis: Any) -> dict[str, Any]:
    return {"export": {"redis": {"url": url, "stream": stream, **redis}}}


async def stream_events(url: str, stream: str) -> list[dict[str, Any]]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        entries = await client.xrange(stream)
    finally:
        await client.aclose()
    out = []
    for stream_id, fields in entries:
        event = json.loads(fields["event"])
        assert stream_id == f"{event['id']}-0" and fields["type"] == event["type"]
        out.append(event)
    return out


async def test_job_changes_become_typed_events_in_commit_order(isolated_farm: Farm) -> None:
    hub = await isolated_farm.hub()
    http = isolated_farm.http(hub)
    sha = await http.upload(b"G28\nG1 X10\n")
    job = await http.submit(sha, name="bracket")
    status, _ = await http.call("POST", f"/api/v1/jobs/{job['id']}/cancel")
    assert status in (200, 202)
    got = await events(http)
    assert [(e["type"], e["payload"]["job_id"]) for e in got] == [("job.queued", job["id"]),
                                                                  ("job.cancelled", job["id"])]
    assert got[0]["payload"]["name"] == "bracket" and got[0]["schema_version"] == 1
    assert got[0]["id"] < got[1]["id"] and got[0]["time"].endswith("+00:00")
    # Paging: each page starts after the last id of the one before.
    status, page = await http.call("GET", "/api/v1/events", params={"after": 0, "limit": 1})
    assert status == 200 and len(page["items"]) == 1 and page["next_after"] == got[0]["id"]
    status, page = await http.call("GET", "/api/v1/events", params={"after": 0, "type": "job.cancelled"})
    assert [e["type"] for e in page["items"]] == ["job.cancelled"]
    # An id past SQLite's 64-bit integers is refused with the reason (the fuzzer once got a 500 here).
    status, problem = await http.call("GET", "/api/v1/events", params={"after": 2**70})
    assert status == 422 and "after" in problem["detail"], problem
    # The milestones of a print: 25, 50 and 75 % once each, as the progress crosses them.
    hub.store.db.execute("UPDATE jobs SET state = 'printing' WHERE id = ?", (job["id"],))
    for progress in (0.1, 0.3, 0.45, 0.8, 0.9, 1.0):
        hub.store.db.execute("UPDATE jobs SET progress = ? WHERE id = ?", (progress, job["id"]))
    milestones = [e["payload"]["milestone"] for e in await events(http, got[-1]["id"], type="job.progress")]
    assert milestones == [25, 75]
    openapi = (await http.call("GET", "/api/v1/openapi.json"))[1]
    assert "/api/v1/events" in openapi["paths"] and "JobProgressEvent" in openapi["components"]["schemas"]


async def test_a_stopped_consumer_gets_all_1000_events_in_order_once_per_group(
        isolated_farm: Farm, redis_url: str, stream_key: str) -> None:
    hub = await isolated_farm.hub(**export(redis_url, stream_key))
    http = isolated_farm.http(hub)
    sha = await http.upload(b"G28\n")
    erp = StreamConsumer(redis_url, stream_key, "erp", "erp-1")
    await erp.ensure_group("$")
    await erp.close()  # the consumer is down from here on

    await submit_many(http, sha, 1000)
    produced = [e["id"] for e in await events(http)]
    assert len(produced) == 1000

    async def delivered(group: str) -> list[int]:
        consumer = StreamConsumer(redis_url, stream_key, group, f"{group}-1", batch=300, block_ms=2000)
        seen: list[int] = []
        try:
            await consumer.ensure_group()
            async for batch in consumer.batches(idle_stop=True):
                seen += [e.event["id"] for e in batch]
                await consumer.ack(batch)
        finally:
            await consumer.close()
        return seen

    await eventually(lambda: hub.export.redis.counters()["cursor"] == produced[-1], "the export to catch up")
    assert await delivered("erp") == produced  # back up: everything, in order, once
    assert await delivered("erp") == []  # and nothing again
    assert await delivered("dashboard") == produced  # another group reads the same stream on its own


async def test_a_hub_restarted_mid_export_leaves_no_gap_and_no_repeat(
        isolated_farm: Farm, redis_url: str, stream_key: str) -> None:
    hub = await isolated_farm.hub(**export(redis_url, stream_key, batch=5, poll_interval_s=0.2))
    http = isolated_farm.http(hub)
    sha = await http.upload(b"G28\n")
    await submit_many(http, sha, 300)
    assert hub.export.redis.counters()["cursor"] < hub.export.events.last_id(), \
        "the export should still be behind the log when the hub stops"
    await hub.stop()
    # As if the hub had died after sending 20 events but before saving how far it got.
    with sqlite3.connect(isolated_farm.tmp_path / "hub" / "hub.db") as db:
        cursor = db.execute("SELECT last_id FROM export_cursors").fetchone()[0]
        again_from = max(cursor - 20, 0)
        db.execute("UPDATE export_cursors SET last_id = ?", (again_from,))
    hub = await isolated_farm.hub(**export(redis_url, stream_key))
    http = isolated_farm.http(hub)
    await submit_many(http, sha, 10)
    total = hub.export.events.last_id()
    await eventually(lambda: hub.export.redis.counters()["cursor"] == total, "the export to catch up")
    assert [e["id"] for e in await stream_events(redis_url, stream_key)] == list(range(1, total + 1))
    # Re-sent, recognised, not added twice: the 20 rolled back, and at most one batch (5) that the stopping
    # hub had sent without saving its cursor.
    assert cursor - again_from <= hub.export.redis.already_there <= cursor - again_from + 5


async def test_the_exporter_catches_up_after_redis_was_down(
        isolated_farm: Farm, private_redis: PrivateRedis) -> None:
    hub = await isolated_farm.hub(**export(private_redis.url, "farm", retry_max_s=0.5))
    http = isolated_farm.http(hub)
    sha = await http.upload(b"G28\n")
    await submit_many(http, sha, 20)
    await eventually(lambda: hub.export.redis.counters()["cursor"] == 20, "the first events to go out")

    private_redis.stop()
    await submit_many(http, sha, 50)
    await eventually(lambda: hub.export.redis.failures >= 2, "the exporter to notice Redis is gone")
    status = (await http.call("GET", "/api/v1/export"))[1]
    assert status["redis"]["connected"] is False and status["redis"]["error"]
    assert status["redis"]["cursor"] == 20

    private_redis.start()
    await eventually(lambda: hub.export.redis.counters()["cursor"] == 70, "the export to catch up", timeout=20)
    assert [e["id"] for e in await stream_events(private_redis.url, "farm")] == list(range(1, 71))
    assert (await http.call("GET", "/api/v1/export"))[1]["redis"]["connected"] is True
