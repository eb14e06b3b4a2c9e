"""Helpers for the export and backup tests: the machine's Redis and PostgreSQL, a private Redis that a test
may stop, and a webhook receiver. Each test gets its own stream key and PostgreSQL schema."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from .conftest import _listening, free_port
from .hubkit import Http, unique
from .prerequisites import missing_reason, program

REDIS = ("127.0.0.1", 6379)
POSTGRES = ("127.0.0.1", 5432)
PG_DSN = os.environ.get("FARMHAND_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def redis_url() -> str:
    if not _listening(*REDIS):
        pytest.skip(missing_reason("Redis on 127.0.0.1:6379 (make test starts one: scripts/ensure-services.sh)"))
    return "redis://127.0.0.1:6379/0"


@pytest.fixture
async def stream_key(redis_url: str) -> AsyncIterator[str]:
    """A stream of this test's own on the shared Redis, deleted afterwards."""
    import redis.asyncio as aioredis

    key = unique("farmhand-test:events")
    yield key
    client = aioredis.Redis.from_url(redis_url)
    await client.delete(key)
    await client.aclose()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A PostgreSQL schema of this test's own in database ``test``, dropped afterwards."""
    if not _listening(*POSTGRES):
        pytest.skip(missing_reason("PostgreSQL on 127.0.0.1:5432 (make test starts one: scripts/ensure-services.sh)"))
    import psycopg

    schema = unique("farmhand_test").replace("-", "_")
    yield schema
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class PrivateRedis:
    """A redis-server this test owns (append-only file on), so it can be stopped and started on its port."""

    def __init__(self, workdir: Path) -> None:
        self.binary, self.workdir, self.port = program("redis-server"), workdir, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _listening("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Receiver:
    """A webhook receiver on a loopback port: records each request; ``fail_next`` answers 500 that many times."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_next = 0
        self.status_when_failing = 500
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _take(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=self.status_when_failing, text="not now")
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._take)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def submit_many(http: Http, sha: str, count: int, parallel: int = 16) -> list[int]:
    """Queue ``count`` jobs of one file; their ids."""
    ids: list[int] = []
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            queue.pop()
            ids.append((await http.submit(sha))["id"])
    await asyncio.gather(*(worker() for _ in range(parallel)))
    return sorted(ids)


async def events(http: Http, after: int = 0, **params: Any) -> list[dict[str, Any]]:
    """Every event in the hub's log after ``after``, read page by page through the pull API."""
    out: list[dict[str, Any]] = []
    while True:
        status, page = await http.call("GET", "/api/v1/events", params={"after": after, "limit": 200, **params})
        assert status == 200, page
        out += page["items"]
        if not page["items"]:
            return out
        after = page["next_after"]
