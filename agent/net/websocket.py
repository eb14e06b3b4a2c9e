"""``WebSocket``: a client WebSocket of text messages (OctoPrint's push socket, Moonraker's JSON-RPC).

The handshake is an HTTP/1.1 upgrade (``wire``); the frames (RFC 6455 section 5) are ours. An agent reads
a message a second from each of a few hundred printers, and a frame codec is a few lines over a byte
buffer: wsproto's pure-Python frame machinery cost about 14 us more a message than that, and aiohttp's C
parser comes with aiohttp. No extension is offered, so none can be in use (RSV bits are an error).

One task reads (``receive`` or ``async for``) while others may ``send_text``. Pings are answered as they
come. With ``heartbeat`` the socket also pings the peer and counts it lost when nothing at all has come
from it for two heartbeats: a printer powered off mid-print drops no FIN, and without this the socket
would wait for the kernel's timeout, minutes. However it ends, ``close_code`` and ``close_reason`` say
why (1006 when the connection was lost rather than closed).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

from .errors import RequestFailed, WebSocketClosed, WebSocketRejected
from .http import HttpConnection, Target, open_stream, os_words
from .wire import READ_SIZE, body_chunks, framing, request_head

ABNORMAL = 1006
"""The close code of a connection lost without a close frame (RFC 6455 7.1.5)."""
MAX_MESSAGE = 16 * 1024 * 1024
"""The largest message taken (Moonraker's file lists can be large): a bigger one is a protocol error."""
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class _ProtocolError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def frame(opcode: int, payload: bytes) -> bytes:
    """One final frame from the client: masked with a fresh key, as RFC 6455 requires of clients."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    key = os.urandom(4)
    return head + key + _masked(payload, key)


def _masked(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return b""
    size = len(payload)
    # One XOR of two big integers: done in C, however long the payload.
    stream = int.from_bytes((key * (size // 4 + 1))[:size], "big")
    return (int.from_bytes(payload, "big") ^ stream).to_bytes(size, "big")


class WebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 heartbeat: float | None = None, max_message: int = MAX_MESSAGE) -> None:
        """A socket whose handshake is done; what the server sent after its answer is still in ``reader``
        (a server that greets at once)."""
        self._reader = reader
        self._writer = writer
        self._max_message = max_message
        self._buffer = bytearray()
        self._messages: deque[str] = deque()
        self._parts: list[bytes] = []  # a fragmented message so far
        self._partial: int | None = None  # its opcode
        self._size = 0
        self._close_sent = False
        self._heard = asyncio.get_running_loop().time()
        self.close_code: int | None = None
        self.close_reason = ""
        self._heartbeat = asyncio.create_task(self._beat(heartbeat)) if heartbeat else None

    @classmethod
    async def connect(cls, url: str, *, headers: Mapping[str, str] | None = None, tls: ssl.SSLContext | None = None,
                      timeout: float | None = 10.0, heartbeat: float | None = None,
                      max_message: int = MAX_MESSAGE) -> WebSocket:
        """Open ``url`` (ws, wss, http or https) and complete the handshake within ``timeout``; a refusal
        raises ``WebSocketRejected`` with the server's status."""
        target = Target.of(url)
        reader, writer = await open_stream(target.origin, tls, timeout)
        try:
            async with asyncio.timeout(timeout):
                await _handshake(HttpConnection(target.origin, reader, writer), target, headers or {})
        except TimeoutError:
            writer.close()
            raise RequestFailed(f"no WebSocket handshake from {target.host} within {timeout} s") from None
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer, heartbeat=heartbeat, max_message=max_message)

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
                self._ended(ABNORMAL, os_words(exc))
                continue
            if not data:
                self._ended(ABNORMAL, "connection lost")
                continue
            self._heard = asyncio.get_running_loop().time()
            self._buffer += data
            self._parse()
        return self._messages.popleft()

    async def __aiter__(self) -> AsyncIterator[str]:
        """Each text message until the socket closes (then see ``close_code``)."""
        while True:
            try:
                yield await self.receive()
            except WebSocketClosed:
                return

    async def send_text(self, text: str) -> None:
        if self.close_code is not None or self._close_sent:
            raise WebSocketClosed(self.close_code, self.close_reason or "closed before sending")
        self._writer.write(frame(_TEXT, text.encode()))
        try:
            await self._writer.drain()
        except OSError as exc:
            self._ended(ABNORMAL, os_words(exc))
            raise WebSocketClosed(self.close_code, self.close_reason) from exc

    async def send_json(self, value: Any) -> None:
        await self.send_text(json.dumps(value))

    async def close(self, code: int = 1000) -> None:
        """Say goodbye with a close frame and drop the connection (the reading task then ends)."""
        self._send_close(code, "")
        self._ended(code, "closed by us")

    # ------------------------------------------------------------------ frames

    def _parse(self) -> None:
        """Take every whole frame out of the buffer."""
        buffer, at = self._buffer, 0
        try:
            while self.close_code is None and len(buffer) - at >= 2:
                first, second = buffer[at], buffer[at + 1]
                size, start = second & 0x7F, at + 2
                if size >= 126:
                    width = 2 if size == 126 else 8
                    if len(buffer) < start + width:
                        break
                    size, start = int.from_bytes(buffer[start:start + width], "big"), start + width
                if first & 0x70 or second & 0x80:
                    raise _ProtocolError(1002, "a reserved bit or a masked frame from the server")
                if size > self._max_message:
                    raise _ProtocolError(1009, f"a frame over {self._max_message} bytes")
                if len(buffer) < start + size:
                    break
                at = start + size
                self._frame(bool(first & 0x80), first & 0x0F, bytes(buffer[start:at]))
        except _ProtocolError as exc:
            self._send_close(exc.code, exc.reason)
            self._ended(exc.code, exc.reason)
        del buffer[:at]

    def _frame(self, final: bool, opcode: int, payload: bytes) -> None:
        if opcode >= _CLOSE:
            if not final or len(payload) > 125:
                raise _ProtocolError(1002, "a fragmented or oversized control frame")
            if opcode == _PING:
                self._writer.write(frame(_PONG, payload))
            elif opcode == _CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._send_close(code, "")
                self._ended(code, payload[2:].decode("utf-8", "replace"))
            return  # a pong: its arrival counted as hearing the peer
        if opcode == _CONTINUATION:
            if self._partial is None:
                raise _ProtocolError(1002, "a continuation frame with no message to continue")
        elif opcode in (_TEXT, _BINARY):
            if self._partial is not None:
                raise _ProtocolError(1002, "a new message inside a fragmented one")
            self._partial = opcode
        else:
            raise _ProtocolError(1002, f"unknown opcode {opcode}")
        self._size += len(payload)
        if self._size > self._max_message:
            raise _ProtocolError(1009, f"a message over {self._max_message} bytes")
        self._parts.append(payload)
        if final:
            whole, kind = b"".join(self._parts), self._partial
            self._parts, self._partial, self._size = [], None, 0
            if kind == _TEXT:  # binary messages carry nothing for us
                try:
                    self._messages.append(whole.decode())
                except UnicodeDecodeError:
                    raise _ProtocolError(1007, "a text message that is not UTF-8") from None

    def _send_close(self, code: int, reason: str) -> None:
        if not self._close_sent and not self._writer.is_closing():
            self._close_sent = True
            payload = code.to_bytes(2, "big") + reason.encode()[:123] if code not in (1005, ABNORMAL) else b""
            self._writer.write(frame(_CLOSE, payload))

    def _ended(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        if self._heartbeat is not None and self._heartbeat is not asyncio.current_task():
            self._heartbeat.cancel()
        self._writer.close()  # what is buffered (a close frame) is still sent

    async def _beat(self, every: float) -> None:
        loop = asyncio.get_running_loop()
        while self.close_code is None:
            await asyncio.sleep(every)
            if loop.time() - self._heard > 2 * every:
                # Closing the transport ends the reading task's wait: it finds the socket closed.
                self._ended(ABNORMAL, f"no answer from the peer for {2 * every:g} s")
                return
            self._writer.write(frame(_PING, b""))


async def _handshake(connection: HttpConnection, target: Target, headers: Mapping[str, str]) -> None:
    """The upgrade request and its answer; what the server sends after its 101 stays in the stream."""
    key = base64.b64encode(os.urandom(16))
    fields = {"host": target.host, "upgrade": "websocket", "connection": "Upgrade",
              "sec-websocket-key": key.decode(), "sec-websocket-version": "13",
              **{name.lower(): value for name, value in headers.items()}}
    await connection.write(request_head("GET", target.path, fields))
    while True:
        head = await connection.head(None)
        if head.status == 101:
            answer = head.fields.get("sec-websocket-accept", "").encode()
            if answer != base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID).digest()):
                raise RequestFailed("the server's WebSocket handshake answer does not match our key")
            return
        if not 100 <= head.status < 200:
            body = b"".join([part async for part in body_chunks(connection.reader, framing("GET", head), None)])
            raise WebSocketRejected(head.status, body.decode("utf-8", "replace").strip()[:300])
