"""``WebSocket``: a client WebSocket of text messages (OctoPrint's push socket, Moonraker's JSON-RPC), framed
by wsproto over an asyncio stream.

One task reads (``receive`` or ``async for``) while others may ``send_text``. Pings are answered as they
come. With ``heartbeat`` the socket also pings the peer and counts it lost when nothing at all has come
from it for two heartbeats: a printer powered off mid-print drops no FIN, and without this the socket
would wait for the kernel's timeout, minutes. However it ends, ``close_code`` and ``close_reason`` say
why (1006 when the connection was lost rather than closed).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (AcceptConnection, CloseConnection, Event, Ping, RejectConnection, RejectData, Request,
                            TextMessage)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .errors import HttpError, WebSocketClosed, WebSocketRejected
from .http import READ_SIZE, Target, open_stream

ABNORMAL = 1006
"""The close code of a connection lost without a close frame (RFC 6455 7.1.5)."""
MAX_MESSAGE = 16 * 1024 * 1024
"""The largest message taken (Moonraker's file lists can be large): a bigger one is a protocol error."""


class WebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ws: WSConnection, *,
                 heartbeat: float | None = None, max_message: int = MAX_MESSAGE) -> None:
        self._reader = reader
        self._writer = writer
        self._ws = ws
        self._max_message = max_message
        self._messages: deque[str] = deque()
        self._parts: list[str] = []
        self._size = 0
        self._heard = asyncio.get_running_loop().time()
        self.close_code: int | None = None
        self.close_reason = ""
        self._heartbeat = asyncio.create_task(self._beat(heartbeat)) if heartbeat else None
        self._received(None)  # frames that came in the same read as the handshake's answer

    @classmethod
    async def connect(cls, url: str, *, headers: Mapping[str, str] | None = None, tls: ssl.SSLContext | None = None,
                      timeout: float | None = 10.0, heartbeat: float | None = None,
                      max_message: int = MAX_MESSAGE) -> WebSocket:
        """Open ``url`` (ws, wss, http or https) and complete the handshake within ``timeout``; a refusal
        raises ``WebSocketRejected`` with the server's status."""
        target = Target.of(url)
        reader, writer = await open_stream(target.origin, tls, timeout)
        ws = WSConnection(ConnectionType.CLIENT)
        try:
            async with asyncio.timeout(timeout):
                extra = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]
                writer.write(ws.send(Request(host=target.host, target=target.path, extra_headers=extra)))
                await _handshake(reader, ws)
        except TimeoutError:
            writer.close()
            raise HttpError(f"no WebSocket handshake from {target.host} within {timeout} s") from None
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer, ws, heartbeat=heartbeat, max_message=max_message)

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    async def receive(self) -> str:
        """The next text message; ``WebSocketClosed`` once the socket is closed and every message taken."""
        while not self._messages:
            if self.close_code is not None:
                raise WebSocketClosed(self.close_code, self.close_reason)
            try:
                data = await self._reader.read(READ_SIZE)
            except OSError as exc:
                self._lost(str(exc.strerror or exc))
                continue
            self._received(data)
        return self._messages.popleft()

    async def __aiter__(self) -> AsyncIterator[str]:
        """Each text message until the socket closes (then see ``close_code``)."""
        while True:
            try:
                yield await self.receive()
            except WebSocketClosed:
                return

    async def send_text(self, text: str) -> None:
        if self.close_code is not None or self._ws.state is not ConnectionState.OPEN:
            raise WebSocketClosed(self.close_code, self.close_reason or "closed before sending")
        self._writer.write(self._ws.send(TextMessage(data=text)))
        try:
            await self._writer.drain()
        except OSError as exc:
            self._lost(str(exc.strerror or exc))
            raise WebSocketClosed(self.close_code, self.close_reason) from exc

    async def send_json(self, value: Any) -> None:
        await self.send_text(json.dumps(value))

    async def close(self, code: int = 1000) -> None:
        """Say goodbye with a close frame and drop the connection (the reading task then ends)."""
        if self._ws.state is ConnectionState.OPEN:
            try:
                self._writer.write(self._ws.send(CloseConnection(code=code)))
            except OSError:
                pass
        if self.close_code is None:
            self.close_code, self.close_reason = code, "closed by us"
        self._shut()

    def _received(self, data: bytes | None) -> None:
        """Take ``data`` (b"": the connection ended; None: nothing new, only what wsproto holds already)."""
        self._heard = asyncio.get_running_loop().time()
        try:
            if data is not None:
                self._ws.receive_data(data or None)
            for event in self._ws.events():
                self._event(event)
        except (RemoteProtocolError, LocalProtocolError) as exc:
            self._closing(1002, f"protocol error: {exc}")

    def _event(self, event: Event) -> None:
        if isinstance(event, TextMessage):
            self._parts.append(event.data)
            self._size += len(event.data)
            if self._size > self._max_message:
                self._closing(1009, f"a message over {self._max_message} characters")
            elif event.message_finished:
                self._messages.append("".join(self._parts))
                self._parts, self._size = [], 0
        elif isinstance(event, Ping):
            self._writer.write(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            if self._ws.state is ConnectionState.REMOTE_CLOSING:
                self._writer.write(self._ws.send(event.response()))
            if self.close_code is None:
                self.close_code = event.code
                self.close_reason = event.reason or ("connection lost" if event.code == ABNORMAL else "")
            self._shut()
        # Binary messages and pongs carry nothing for us; a pong's arrival counts as hearing the peer.

    def _closing(self, code: int, reason: str) -> None:
        if self._ws.state is ConnectionState.OPEN:
            self._writer.write(self._ws.send(CloseConnection(code=code, reason=reason)))
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self._shut()

    def _lost(self, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = ABNORMAL, reason
        self._shut()

    def _shut(self) -> None:
        if self._heartbeat is not None and self._heartbeat is not asyncio.current_task():
            self._heartbeat.cancel()
        self._writer.close()

    async def _beat(self, every: float) -> None:
        loop = asyncio.get_running_loop()
        while self.close_code is None:
            await asyncio.sleep(every)
            if loop.time() - self._heard > 2 * every:
                # Closing the transport ends the reading task's wait: it finds the socket closed.
                self._lost(f"no answer from the peer for {2 * every:g} s")
                return
            if self._ws.state is ConnectionState.OPEN:
                self._writer.write(self._ws.send(Ping()))


async def _handshake(reader: asyncio.StreamReader, ws: WSConnection) -> None:
    status, body = 0, b""
    try:
        while True:
            data = await reader.read(READ_SIZE)
            ws.receive_data(data or None)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise WebSocketRejected(status)
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        raise WebSocketRejected(status, body.decode("utf-8", "replace").strip()[:300])
                elif isinstance(event, CloseConnection):
                    raise HttpError("the connection closed during the WebSocket handshake")
    except (OSError, RemoteProtocolError) as exc:
        raise HttpError(f"WebSocket handshake failed: {exc}") from exc
