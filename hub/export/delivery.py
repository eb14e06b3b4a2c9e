"""Delivers events to each webhook, in order, one worker per subscription.

A worker posts the next subscribed event after its cursor; a failure (no answer, a timeout, a status that
is not 2xx) is tried again after 1, 2, 4… times ``backoff_base_s`` until ``max_attempts``, then the event
goes to the dead-letter list and the worker moves on, so one bad event does not hold the rest forever.
A replay or a deleted subscription restarts (or ends) that worker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import structlog

from hub.tasks import stop_tasks

from .config import WebhookConfig
from .event_log import EventLog, type_matches
from .schemas import wire_json
from .signing import HEADER, sign
from .webhooks import Webhooks

log = structlog.get_logger("farmhand.hub.export.webhooks")

SCAN = 500
SAVE_EVERY_S = 0.5


class Deliverer:
    def __init__(self, webhooks: Webhooks, events: EventLog, config: WebhookConfig) -> None:
        self.webhooks = webhooks
        self.events = events
        self.config = config
        self.delivered = 0
        self.failed_tries = 0
        self.dead = 0
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    def restart(self, webhook_id: int) -> None:
        """The subscription changed (replayed, deleted): its worker starts again from the stored cursor."""
        task = self._workers.pop(webhook_id, None)
        if task is not None:
            task.cancel()

    async def run(self) -> None:
        """Keep one worker running per live subscription, until cancelled."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
        try:
            while True:
                live = {hook["id"]: hook for hook in self.webhooks.active()}
                for webhook_id in [w for w in self._workers if w not in live or self._workers[w].done()]:
                    task = self._workers.pop(webhook_id)
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        log.error("webhook_worker_failed", webhook=webhook_id, error=repr(task.exception()))
                    task.cancel()
                for webhook_id, hook in live.items():
                    if webhook_id not in self._workers:
                        self._workers[webhook_id] = asyncio.create_task(self._work(hook),
                                                                        name=f"hub:webhook-{webhook_id}")
                await asyncio.sleep(self.config.poll_interval_s)
        finally:
            await stop_tasks(*self._workers.values())
            self._workers.clear()
            await self._session.close()

    async def _work(self, hook: dict[str, Any]) -> None:
        # The cursor is saved every SAVE_EVERY_S, not per event (each save is a synchronous commit): a hub
        # stopped in between delivers those events again, which receivers tell apart by the event id.
        # Nothing is saved on cancellation: a replay has just moved the stored cursor back.
        cursor = saved = hook["last_id"]
        replaying = self.webhooks.dead_ids(hook["id"], after=cursor)
        saved_at = time.monotonic()
        while True:
            rows = self.events.after(cursor, SCAN)
            for row in rows:
                if type_matches(hook["event_types"], row["type"]):
                    if await self._deliver(hook, row):
                        if row["id"] in replaying:
                            self.webhooks.delivered(hook["id"], row["id"])
                    else:
                        saved = row["id"]  # dead-lettering saved the cursor with it
                cursor = row["id"]
                if cursor > saved and time.monotonic() - saved_at > SAVE_EVERY_S:
                    self.webhooks.advance(hook["id"], cursor)
                    saved, saved_at = cursor, time.monotonic()
            if not rows:
                if cursor > saved:
                    self.webhooks.advance(hook["id"], cursor)
                    saved, saved_at = cursor, time.monotonic()
                await asyncio.sleep(self.config.poll_interval_s)

    async def _deliver(self, hook: dict[str, Any], row: dict[str, Any]) -> bool:
        """True when the receiver took the event; False when it went to the dead-letter list."""
        body = wire_json(row).encode()
        error = ""
        for attempt in range(1, self.config.max_attempts + 1):
            error = await self._post(hook, row, body)
            if not error:
                self.delivered += 1
                return True
            self.failed_tries += 1
            log.info("webhook_try_failed", webhook=hook["id"], event_id=row["id"], attempt=attempt, error=error)
            if attempt < self.config.max_attempts:
                await asyncio.sleep(min(self.config.backoff_base_s * 2 ** (attempt - 1), self.config.backoff_max_s))
        self.webhooks.dead(hook["id"], row["id"], self.config.max_attempts, error)
        self.dead += 1
        log.warning("webhook_dead_letter", webhook=hook["id"], url=hook["url"], event_id=row["id"], error=error)
        return False

    async def _post(self, hook: dict[str, Any], row: dict[str, Any], body: bytes) -> str:
        """'' when the receiver took the event; otherwise what went wrong, in a few words."""
        assert self._session is not None
        headers = {"Content-Type": "application/json", "X-Farmhand-Event": row["type"],
                   "X-Farmhand-Event-Id": str(row["id"]), HEADER: sign(hook["secret"], body)}
        try:
            async with self._session.post(hook["url"], data=body, headers=headers) as response:
                await response.read()
                return "" if 200 <= response.status < 300 else f"HTTP {response.status}"
        except TimeoutError:
            return f"no answer in {self.config.timeout_s:g} s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"

    def counters(self) -> dict[str, int]:
        return {"subscriptions": len(self._workers), "delivered": self.delivered,
                "failed_tries": self.failed_tries, "dead_lettered": self.dead,
                "dead_letters": self.webhooks.dead_letter_count()}
