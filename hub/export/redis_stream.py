"""Copies the outbound event log into a Redis stream, in order, resuming from its own high-water mark.

Each event is added as stream id ``<event id>-0`` with fields ``type`` and ``event`` (the event's JSON), so
the stream's order is the log's order and adding an event twice is refused by Redis itself: after a crash
between XADD and saving the cursor, the re-sent events are recognised as already there (same id, same
time) and skipped. The cursor is saved in SQLite after each batch Redis accepted, so a hub restart or a
Redis outage resumes where Redis stopped hearing from us: at least once, in practice exactly once.

Consumers read with a consumer group (XREADGROUP) and resume from their own last id.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog

from .config import RedisExportConfig
from .event_log import EventLog
from .schemas import wire_json

log = structlog.get_logger("farmhand.hub.export.redis")

ALREADY_THERE = "equal or smaller"

# One round trip per batch: the adds run in Redis, in order, and only the refused ones come back. Sending
# each XADD as its own command (even pipelined) spends most of the time parsing the replies in Python.
XADD_ALL = """
local refused = {}
for i = 2, #ARGV, 3 do
  local reply = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i], 'type', ARGV[i + 1], 'event', ARGV[i + 2])
  if type(reply) == 'table' and reply.err then
    refused[#refused + 1] = ARGV[i]
    refused[#refused + 1] = reply.err
  end
end
return refused
"""


class StreamConflict(RuntimeError):
    """The stream holds a different event under one of our ids (e.g. the hub was restored from a backup)."""


def stream_id(event_id: int) -> str:
    return f"{event_id}-0"


class RedisExporter:
    def __init__(self, events: EventLog, config: RedisExportConfig) -> None:
        import redis.asyncio as aioredis  # only a hub that exports needs the client

        self.events = events
        self.config = config
        self.cursor_name = f"redis:{config.stream}"
        self.redis = aioredis.Redis.from_url(config.url or "", socket_connect_timeout=2, socket_timeout=10,
                                             decode_responses=True)
        self._xadd_all = self.redis.register_script(XADD_ALL)
        self.exported = 0
        self.already_there = 0
        self.failures = 0
        self.connected = False
        self.error: str | None = None
        self.stopping = False

    async def run(self) -> None:
        """Export until stopped; a Redis error is logged and retried with a growing pause.

        The loop also ends on ``stopping``: redis-py can swallow a cancellation that lands inside a command.
        """
        cursor = self.events.cursor(self.cursor_name, start=0)
        retry_s = 0.1
        while not self.stopping:
            rows = self.events.after(cursor, self.config.batch)
            if not rows:
                await asyncio.sleep(self.config.poll_interval_s)
                continue
            try:
                await self._add(rows)
            except StreamConflict as exc:
                self._failed(str(exc), "export_stream_conflict")
                await asyncio.sleep(self.config.retry_max_s)
                continue
            except Exception as exc:  # redis.ConnectionError, TimeoutError, a ResponseError such as WRONGTYPE
                self._failed(f"{type(exc).__name__}: {exc}", "export_redis_failed")
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, self.config.retry_max_s)
                continue
            if not self.connected or self.error:
                log.info("export_redis_flowing", stream=self.config.stream, after=cursor)
            self.connected, self.error, retry_s = True, None, 0.1
            cursor = rows[-1]["id"]
            self.events.save_cursor(self.cursor_name, cursor)
            self.exported += len(rows)

    def _failed(self, error: str, what: str) -> None:
        if self.error != error:
            log.warning(what, stream=self.config.stream, error=error)
        self.connected, self.error = False, error
        self.failures += 1

    async def _add(self, rows: list[dict[str, Any]]) -> None:
        args: list[Any] = [self.config.maxlen]
        for row in rows:
            args += [stream_id(row["id"]), row["type"], wire_json(row)]
        refused = await self._xadd_all(keys=[self.config.stream], args=args)
        for event_id, error in zip(refused[::2], refused[1::2], strict=True):
            if ALREADY_THERE not in str(error):
                raise RuntimeError(f"XADD {event_id}: {error}")
            await self._check_same(next(r for r in rows if stream_id(r["id"]) == event_id))

    async def _check_same(self, row: dict[str, Any]) -> None:
        """A refused id is fine when it is this very event (sent before a crash), or was trimmed since."""
        found = await self.redis.xrange(self.config.stream, stream_id(row["id"]), stream_id(row["id"]))
        if found:
            there = json.loads(found[0][1].get("event", "{}"))
            if there.get("time") != row["time"] or there.get("type") != row["type"]:
                raise StreamConflict(
                    f"stream {self.config.stream!r} holds a different event {row['id']} ({there.get('type')} at "
                    f"{there.get('time')}); was the hub restored from a backup? Export to a new stream "
                    f"([export.redis] stream) or delete this one")
        self.already_there += 1

    async def close(self) -> None:
        await self.redis.aclose()

    def counters(self) -> dict[str, Any]:
        return {"stream": self.config.stream, "cursor": self.events.cursor(self.cursor_name, start=0),
                "exported": self.exported, "already_there": self.already_there, "failures": self.failures,
                "connected": self.connected, "error": self.error}
