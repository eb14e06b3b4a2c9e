"""The reference PostgreSQL consumer, on the real Redis stream of a real hub and a real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis

from hub.export.postgres_sink import PostgresSink
from hub.export.stream_consumer import StreamConsumer

from .exportkit import PG_DSN, events, pg_schema, redis_url, stream_key, submit_many  # noqa: F401 - fixtures
from .hubkit import Farm, eventually, isolated_farm  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def table(schema: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_DSN) as conn:
        return conn.execute(sql.format(schema=f'"{schema}"')).fetchall()


async def sync(redis_url: str, stream: str, schema: str) -> PostgresSink:
    consumer = StreamConsumer(redis_url, stream, "pg", "pg-1", block_ms=500)
    sink = PostgresSink(consumer, PG_DSN, schema)
    try:
        await sink.run(until_idle=True)
    finally:
        await consumer.close()
    return sink


async def test_jobs_orders_and_stock_reach_postgres_once_even_when_replayed(
        isolated_farm: Farm, redis_url: str, stream_key: str, pg_schema: str) -> None:
    hub = await isolated_farm.hub(export={"redis": {"url": redis_url, "stream": stream_key}})
    http = isolated_farm.http(hub)
    sha = await http.upload(b"G28\n")
    jobs = await submit_many(http, sha, 30)
    for job_id in jobs[:10]:
        await http.call("POST", f"/api/v1/jobs/{job_id}/cancel")
    vendor = (await http.call("POST", "/api/v1/vendors", json={"name": "Prusament"}))[1]
    filament = (await http.call("POST", "/api/v1/filaments", json={
        "vendor_id": vendor["id"], "material": "PETG", "density": 1.27, "weight": 1000}))[1]
    spool = (await http.call("POST", "/api/v1/spools", json={"filament_id": filament["id"], "initial_weight": 1000}))[1]
    order = (await http.call("POST", "/api/v1/orders", json={"customer": "Acme", "items": [{"file_sha256": sha}]}))
    assert order[0] == 201, order
    await http.call("POST", f"/api/v1/orders/{order[1]['id']}/cancel")
    last = hub.export.events.last_id()
    await eventually(lambda: hub.export.redis.counters()["cursor"] == last, "the export to catch up")

    first = await sync(redis_url, stream_key, pg_schema)
    assert first.applied == last and first.repeated == 0
    hub_jobs = {j["id"]: j["state"] for j in (await http.call("GET", "/api/v1/jobs", params={"limit": 500}))[1]["items"]}
    assert dict(table(pg_schema, "SELECT job_id, state FROM {schema}.jobs")) == hub_jobs
    assert table(pg_schema, "SELECT customer, cancelled_at IS NOT NULL FROM {schema}.orders") == [("Acme", True)]
    assert table(pg_schema, "SELECT spool_id, material, remaining_weight FROM {schema}.spools") == [
        (spool["id"], "PETG", 1000.0)]
    before = table(pg_schema, "SELECT * FROM {schema}.jobs ORDER BY job_id")

    # Replay the whole stream to the group (as after a consumer crash before XACK): nothing changes.
    client = aioredis.Redis.from_url(redis_url)
    await client.xgroup_setid(stream_key, "pg", "0")
    await client.aclose()
    again = await sync(redis_url, stream_key, pg_schema)
    assert again.applied == 0 and again.repeated == last
    assert table(pg_schema, "SELECT * FROM {schema}.jobs ORDER BY job_id") == before
    applied = [row[0] for row in table(pg_schema, "SELECT event_id FROM {schema}.applied_events ORDER BY applied_seq")]
    assert applied == list(range(1, last + 1))  # in the hub's order, each once


async def test_the_cli_consumer_killed_and_restarted_misses_nothing(
        isolated_farm: Farm, redis_url: str, stream_key: str, pg_schema: str) -> None:
    hub = await isolated_farm.hub(export={"redis": {"url": redis_url, "stream": stream_key}})
    http = isolated_farm.http(hub)
    sha = await http.upload(b"G28\n")
    command = [sys.executable, "-m", "farmhand.cli", "--log-json", "export", "postgres", "--from-stream", stream_key,
               "--redis", redis_url, "--dsn", PG_DSN, "--schema", pg_schema, "--group", "erp"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    consumer = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await submit_many(http, sha, 50)
        await eventually(lambda: _count(pg_schema) == 50, "the consumer to sync the first jobs", timeout=30)
        consumer.send_signal(signal.SIGKILL)
        consumer.wait(10)
        jobs = await submit_many(http, sha, 200)
        consumer = subprocess.Popen(command + ["--until-idle"], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        assert consumer.wait(60) == 0
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait(10)
    assert _count(pg_schema) == 250
    assert table(pg_schema, "SELECT max(job_id) FROM {schema}.jobs") == [(jobs[-1],)]
    assert [r[0] for r in table(pg_schema, "SELECT event_id FROM {schema}.applied_events ORDER BY applied_seq")] == [
        e["id"] for e in await events(http)]


def _count(schema: str) -> int:
    try:
        return table(schema, "SELECT count(*) FROM {schema}.jobs")[0][0]
    except psycopg.errors.UndefinedTable:
        return 0
