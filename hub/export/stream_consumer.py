"""Reading the hub's event stream with a Redis consumer group, the way a downstream system should.

A consumer first takes back what it read but never acknowledged (it died mid-batch), then new entries;
it acknowledges a batch only after handling it, so nothing is lost while it is down and each entry is
handed to the group once (again only if the handler did not finish). ``PostgresSink`` is built on it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError


@dataclass(frozen=True)
class StreamEvent:
    stream_id: str
    event: dict[str, Any]  # {id, type, schema_version, time, payload}


class StreamConsumer:
    def __init__(self, redis_url: str, stream: str, group: str, consumer: str, *, batch: int = 500,
                 block_ms: int = 1000) -> None:
        self.redis = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_connect_timeout=2)
        self.stream, self.group, self.consumer = stream, group, consumer
        self.batch, self.block_ms = batch, block_ms

    async def ensure_group(self, start: str = "0") -> None:
        """Create the group (from the stream's start by default) unless it exists."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def batches(self, idle_stop: bool = False) -> AsyncIterator[list[StreamEvent]]:
        """Unacknowledged entries first, then new ones; ``idle_stop``: end when a read comes back empty."""
        pending = True
        while True:
            answer = await self.redis.xreadgroup(self.group, self.consumer, {self.stream: "0" if pending else ">"},
                                                 count=self.batch, block=None if pending else self.block_ms)
            entries = answer[0][1] if answer else []
            if pending and not entries:
                pending = False
                continue
            if not entries:
                if idle_stop:
                    return
                continue
            yield [StreamEvent(sid, json.loads(fields["event"])) for sid, fields in entries]

    async def ack(self, events: list[StreamEvent]) -> None:
        if events:
            await self.redis.xack(self.stream, self.group, *[e.stream_id for e in events])

    async def close(self) -> None:
        await self.redis.aclose()
