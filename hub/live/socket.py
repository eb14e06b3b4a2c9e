"""The ``/api/v1/live`` WebSocket: a client's subscriptions in, the bus's updates out in batches."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from hub.bus import Bus, Subscriber

BATCH_LIMIT = 64


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
