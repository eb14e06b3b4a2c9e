"""The live bus: in-process publish/subscribe of state changes, for the panel's ``/api/v1/live`` socket.

Publishers (ingest, job changes) call ``Bus.publish`` and never wait: each
subscriber has a bounded queue, and a subscriber whose queue is full is dropped
(its socket closed with 1013 "try again later") instead of slowing the hub. The
panel reconnects and refetches, so dropping loses nothing it cannot recover.

Protocol: the client sends ``{"subscribe": ["devices", "jobs", "device:node/dev"]}``
(any time, replacing the set); the hub sends JSON arrays of ``{"topic": ..., "key": ..., "data": ...}``
(several updates per message when they pile up) and plain objects to acknowledge a subscription.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("farmhand.hub.live")

QUEUE_LIMIT = 256
TOPICS = ("devices", "jobs", "nodes", "orders", "render", "alerts", "stock")


class Subscriber:
    def __init__(self, limit: int) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(limit)
        self.topics: frozenset[str] = frozenset()
        self.dropped = False
        self.kick: Callable[[], None] = lambda: None

    def wants(self, topic: str, key: str | None) -> bool:
        return topic in self.topics or (key is not None and f"{topic}:{key}" in self.topics)


class Bus:
    def __init__(self, queue_limit: int = QUEUE_LIMIT) -> None:
        self.queue_limit = queue_limit
        self.subscribers: set[Subscriber] = set()
        self.published = 0
        self.dropped_clients = 0

    def subscribe(self) -> Subscriber:
        sub = Subscriber(self.queue_limit)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def wants(self, topic: str, key: str | None = None) -> bool:
        return any(s.wants(topic, key) for s in self.subscribers)

    def publish(self, topic: str, key: str | None, data: Any) -> None:
        """Never blocks; ``data`` is JSON-ready (e.g. ``model.model_dump(mode="json")``)."""
        interested = self._interested(topic, key)
        if interested:
            self._deliver(interested, json.dumps({"topic": topic, "key": key, "data": data},
                                                 separators=(",", ":")).encode())

    def publish_json(self, topic: str, key: str | None, data: bytes) -> None:
        """``publish`` for ``data`` already encoded as JSON (a feed that serialises thousands of items at once)."""
        interested = self._interested(topic, key)
        if interested:
            head = json.dumps({"topic": topic, "key": key}, separators=(",", ":")).encode()
            self._deliver(interested, head[:-1] + b',"data":' + data + b"}")

    def _interested(self, topic: str, key: str | None) -> list[Subscriber]:
        return [s for s in self.subscribers if s.wants(topic, key)]

    def _deliver(self, interested: list[Subscriber], frame: bytes) -> None:
        self.published += 1
        for sub in interested:
            try:
                sub.queue.put_nowait(frame)
            except asyncio.QueueFull:
                sub.dropped = True
                sub.kick()
                self.subscribers.discard(sub)
                self.dropped_clients += 1
                log.warning("live_client_dropped", reason="queue full", queue_limit=self.queue_limit)

    def counters(self) -> dict[str, int]:
        return {"clients": len(self.subscribers), "published": self.published, "dropped_clients": self.dropped_clients}
