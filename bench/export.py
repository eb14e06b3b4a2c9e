"""How fast the hub's events reach Redis and a webhook, and how late, while the hub ingests at its usual load.

    python -m bench.export            # 30000 events backlog, 20 s steady
    python -m bench.export --quick    # 5000 events backlog, 5 s steady

A real hub (embedded broker, HTTP on a free port) exports to the machine's Redis (127.0.0.1:6379, a stream
of its own, deleted after) and to one webhook subscribed to every event (a receiver on this loop). Its usual
load runs throughout: 200 job-progress messages a second through ``Ingest.handle``, as the MQTT session
would deliver them. Events come from the database triggers, as in production:

- backlog: jobs inserted in transactions of 500, all before the exporters next run; ``redis_events_per_s``
  and ``webhook_events_per_s`` are the backlog's size over the time until the exporter / the webhook had all
  of it (both drain at once, beside the usual load, on the hub's one event loop);
- steady: 500 events a second in transactions of 10; ``lag_p99_s`` is the 99th percentile of (seen by a
  Redis consumer reading with XREAD BLOCK) minus (the event's stored time).

The last line printed is one JSON object with the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis
from aiohttp import web

from hub.app import Hub
from hub.config import HubConfig
from hub.export.schemas import WebhookCreate
from hub.store import utcnow
from protocol import codec, topics
from protocol.logs import configure
from protocol.messages import JobProgress

REDIS_URL = "redis://127.0.0.1:6379/0"
SHA = "b" * 64


def insert_jobs(hub: Hub, count: int) -> None:
    assert hub.store is not None
    with hub.store.transaction() as db:
        db.conn.executemany("INSERT INTO jobs (name, file_sha256, state, created_at) VALUES ('bench', ?, 'queued', ?)",
                       [(SHA, utcnow())] * count)


async def usual_load(hub: Hub, stop: asyncio.Event, per_s: int = 200) -> int:
    """Progress reports of one printing job, as a farm's agents send them."""
    assert hub.store is not None
    hub.store.db.execute("INSERT INTO jobs (name, file_sha256, state, node, device, created_at)"
                         " VALUES ('printing', ?, 'printing', 'pi-1', 'mk3s-1', ?)", (SHA, utcnow()))
    job_id = hub.store.db.execute("SELECT MAX(id) FROM jobs").fetchone()[0]
    topic, seq = topics.node_event("pi-1"), 0
    while not stop.is_set():
        for _ in range(per_s // 20):
            seq += 1
            body = JobProgress(device="mk3s-1", job_id=str(job_id), progress=(seq % 1000) / 1000, lines_done=seq)
            await hub.ingest.handle(topic, codec.encode(codec.make("pi-1", body, seq=seq)), 1)
        await asyncio.sleep(0.05)
    return seq


async def wait_for(check, what: str, timeout: float = 300.0) -> float:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench.export: {what} did not happen in {timeout:.0f} s")
        await asyncio.sleep(0.01)
    return time.perf_counter()


async def lag_reader(stream: str, lags: list[float], stop: asyncio.Event) -> None:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    last = "$"
    try:
        while not stop.is_set():
            answer = await client.xread({stream: last}, count=1000, block=200)
            now = datetime.now(UTC)
            for _, entries in answer:
                for stream_id, fields in entries:
                    last = stream_id
                    stored = datetime.fromisoformat(json.loads(fields["event"])["time"])
                    lags.append((now - stored).total_seconds())
    finally:
        await client.aclose()


async def main(quick: bool) -> dict[str, float | int]:
    backlog, steady_s = (5000, 5.0) if quick else (30000, 20.0)
    stream = f"farmhand-bench:{uuid.uuid4().hex[:8]}"
    received: list[int] = []

    async def take(request: web.Request) -> web.Response:
        received.append(len(await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"

    with tempfile.TemporaryDirectory() as tmp:
        hub = Hub(HubConfig.model_validate({
            "hub_id": "bench", "data_dir": Path(tmp), "http": {"port": 0}, "mqtt": {"embedded_port": 0},
            "auth": {"admin_password": "bench-password-not-secret"},
            "export": {"redis": {"url": REDIS_URL, "stream": stream},
                       "webhooks": {"poll_interval_s": 0.02}}}))
        await hub.start()
        stop_load, stop_lag = asyncio.Event(), asyncio.Event()
        try:
            assert hub.store is not None
            hub.store.db.execute("INSERT INTO files VALUES (?, 'part.gcode', 1, ?)", (SHA, utcnow()))
            hub.export.webhooks.create(WebhookCreate(url=hook_url, from_id=hub.export.events.last_id()))
            load = asyncio.create_task(usual_load(hub, stop_load))
            await asyncio.sleep(0.5)
            print(f"backlog: {backlog} events", flush=True)
            first = hub.export.events.last_id()
            for _ in range(backlog // 500):  # no await in between: the exporters see the backlog at once
                insert_jobs(hub, 500)
            started = time.perf_counter()
            last = hub.export.events.last_id()
            redis = hub.export.redis
            assert redis is not None
            redis_done = await wait_for(lambda: redis.counters()["cursor"] >= last, "the Redis export")
            print(f"redis: {last - first} events in {redis_done - started:.2f} s", flush=True)
            hooks = hub.export.deliverer
            webhook_done = await wait_for(lambda: hooks.delivered >= last - first, "the webhook deliveries")
            print(f"webhook: {hooks.delivered} events in {webhook_done - started:.2f} s", flush=True)

            lags: list[float] = []
            reader = asyncio.create_task(lag_reader(stream, lags, stop_lag))
            await asyncio.sleep(0.3)
            print(f"steady: 500 events/s for {steady_s:.0f} s", flush=True)
            end = time.monotonic() + steady_s
            while time.monotonic() < end:
                insert_jobs(hub, 10)
                await asyncio.sleep(0.02)
            final = hub.export.events.last_id()
            await wait_for(lambda: redis.counters()["cursor"] >= final, "the steady export")
            await asyncio.sleep(0.5)
            stop_lag.set()
            await reader
            stop_load.set()
            ingested = await load
        finally:
            stop_load.set()
            stop_lag.set()
            client = aioredis.Redis.from_url(REDIS_URL)
            await client.delete(stream)
            await client.aclose()
            await hub.stop()
            await runner.cleanup()
    lags.sort()
    return {"backlog_events": last - first, "redis_events_per_s": round((last - first) / (redis_done - started), 1),
            "webhook_events_per_s": round((last - first) / (webhook_done - started), 1),
            "lag_p50_s": round(lags[len(lags) // 2], 4), "lag_p99_s": round(lags[int(len(lags) * 0.99)], 4),
            "lag_samples": len(lags), "ingested_messages": ingested}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller backlog and a shorter steady phase")
    args = parser.parse_args()
    configure("warning", json=False)
    print(json.dumps(asyncio.run(main(args.quick))))
