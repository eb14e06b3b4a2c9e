"""Live updates: an in-process publish/subscribe bus and the ``/api/v1/live`` WebSocket.

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
from aiohttp import WSCloseCode, WSMsgType, web

log = structlog.get_logger("farmhand.hub.live")

QUEUE_LIMIT = 256
BATCH_LIMIT = 64
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
        interested = [s for s in self.subscribers if s.wants(topic, key)]
        if not interested:
            return
        self.published += 1
        frame = json.dumps({"topic": topic, "key": key, "data": data}, separators=(",", ":")).encode()
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


def _topics(raw: Any) -> frozenset[str] | None:
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw) or len(raw) > 500:
        return None
    return frozenset(raw)


class LiveSocket:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
        await ws.prepare(request)
        sub = self.bus.subscribe()
        sender = asyncio.create_task(self._send(request, ws, sub), name="live:send")
        sub.kick = sender.cancel
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    wanted = _topics(json.loads(msg.data).get("subscribe"))
                except (ValueError, AttributeError):
                    wanted = None
                if wanted is None:
                    await ws.send_json({"error": 'send {"subscribe": ["devices", "jobs", ...]}'})
                    continue
                sub.topics = wanted
                await ws.send_json({"subscribed": sorted(wanted)})
        finally:
            self.bus.unsubscribe(sub)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return ws

    async def _send(self, request: web.Request, ws: web.WebSocketResponse, sub: Subscriber) -> None:
        try:
            while True:
                frames = [await sub.queue.get()]
                # Whatever piled up while the last send was in flight goes as one message:
                # per-message overhead, not bytes, is what a busy farm costs per panel.
                while not sub.queue.empty() and len(frames) < BATCH_LIMIT:
                    frames.append(sub.queue.get_nowait())
                await ws.send_str("[" + b",".join(frames).decode() + "]")
        except asyncio.CancelledError:
            if sub.dropped:
                try:
                    await asyncio.wait_for(ws.close(code=WSCloseCode.TRY_AGAIN_LATER,
                                                    message=b"too slow: reconnect and refetch"), 2.0)
                except (TimeoutError, ConnectionError):
                    # It cannot even take a close frame: cut the connection.
                    if request.transport is not None:
                        request.transport.abort()
            raise
