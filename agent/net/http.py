"""``HttpClient``: HTTP/1.1 requests over asyncio streams, framed by ``wire``, with kept-alive connections.

One client per printer (or per use), as a printer's API is one origin: the client keeps at most
``max_idle`` idle connections per origin, for ``IDLE_S`` seconds, and checks that the peer has not
closed one before it reuses it. A request that finds a kept connection broken before any answer came
is sent once more on a new one, but only when that cannot do anything twice (an idempotent method and a
body that is bytes or none): a POST that starts a print is never sent twice.

Timeouts are ``Timeout``'s three: the whole exchange (``total``, body included), making the connection
(``connect``) and waiting for the next bytes (``read``). A timeout raises ``TimeoutError``; everything
else that goes wrong raises ``RequestFailed`` (``ConnectFailed`` for no connection).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any
from urllib.parse import urlsplit

from .errors import ConnectFailed, RequestFailed, InvalidUrl
from .multipart import Multipart
from .wire import READ_SIZE, Head, body_chunks, framing, read_head, request_head

IDLE_S = 15.0
"""How long an idle connection is kept for the next request (servers close theirs after a while)."""
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

Body = bytes | AsyncIterable[bytes] | Multipart | None
"""A request body: bytes, chunks as they are read (sent chunked unless a Content-Length header is given),
or a multipart form."""


@dataclass(frozen=True, slots=True)
class Timeout:
    """Seconds, or None for no limit."""

    total: float | None = None
    connect: float | None = 10.0
    read: float | None = 60.0


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str  # http or https (ws and wss map onto them)
    host: str
    port: int

    @property
    def secure(self) -> bool:
        return self.scheme == "https"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes: the origin, the request target (path and query) and the Host header."""

    origin: Origin
    path: str
    host: str

    @classmethod
    @lru_cache(maxsize=1024)  # a printer's API is a handful of URLs asked every second
    def of(cls, url: str) -> Target:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise InvalidUrl(f"{url!r}: {exc}") from None
        scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
        if scheme not in ("http", "https") or not parts.hostname:
            raise InvalidUrl(f"{url!r} is not an http(s) URL with a host")
        origin = Origin(scheme, parts.hostname, port or (443 if scheme == "https" else 80))
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(origin, path, parts.netloc.rpartition("@")[2])


class Headers(Mapping[str, str]):
    """A response's headers, looked up in any case; a repeated header's values joined by ", "."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        """``items``: lower-case names (as ``wire.read_head`` gives them)."""
        self._items = dict(items or {})

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class HttpConnection:
    """One TCP (or TLS) connection; ``idle`` between exchanges, when it may serve another."""

    def __init__(self, origin: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.origin = origin
        self.reader = reader
        self.writer = writer
        self.idle = False
        self.idle_since = 0.0

    @classmethod
    async def open(cls, origin: Origin, tls: ssl.SSLContext | None, timeout: float | None) -> HttpConnection:
        reader, writer = await open_stream(origin, tls, timeout)
        return cls(origin, reader, writer)

    @property
    def where(self) -> str:
        return f"{self.origin.host}:{self.origin.port}"

    def reusable(self) -> bool:
        """Idle between exchanges, and the peer has not closed it meanwhile."""
        return (self.idle and not self.writer.is_closing() and not self.reader.at_eof()
                and asyncio.get_running_loop().time() - self.idle_since < IDLE_S)

    async def write(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except OSError as exc:
            raise RequestFailed(f"sending to {self.where} failed: {os_words(exc)}") from exc

    async def head(self, read_timeout: float | None) -> Head:
        try:
            return await read_head(self.reader, read_timeout)
        except TimeoutError:  # an OSError too, but a timeout is said as one
            raise
        except OSError as exc:
            raise RequestFailed(f"reading from {self.where} failed: {os_words(exc)}") from exc

    def close(self) -> None:
        self.idle = False
        self.writer.close()


async def open_stream(origin: Origin, tls: ssl.SSLContext | None,
                      timeout: float | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to ``origin`` (TLS with ``tls``, or the system's trusted CAs when None, for https)."""
    context = (tls or default_tls()) if origin.secure else None
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.open_connection(origin.host, origin.port, ssl=context, limit=READ_SIZE,
                                                 server_hostname=origin.host if context else None)
    except TimeoutError:
        raise ConnectFailed(f"no connection to {origin.host}:{origin.port} within {timeout} s") from None
    except OSError as exc:  # refused, unreachable, no such host, a TLS handshake refused (ssl.SSLError)
        raise ConnectFailed(f"cannot connect to {origin.host}:{origin.port}: {os_words(exc)}") from exc


@cache
def default_tls() -> ssl.SSLContext:
    """The system's trusted CAs, loaded once and only when an https URL is used (about 2 MB)."""
    return ssl.create_default_context()


class HttpResponse:
    """A response whose body is read on demand, while its ``HttpClient.request`` block is open."""

    def __init__(self, connection: HttpConnection, method: str, head: Head, read_timeout: float | None) -> None:
        self.status = head.status
        self.reason = head.reason
        self.headers = Headers(head.fields)
        self.keep_alive = head.keep_alive
        self._connection = connection
        self._framing = framing(method, head)
        self._read_timeout = read_timeout
        self._body: bytes | None = None
        self.complete = self._framing is None  # the whole body was read: the connection can serve another request

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        if self.complete:
            return
        try:
            async for data in body_chunks(self._connection.reader, self._framing, self._read_timeout):
                yield data
        except TimeoutError:
            raise
        except OSError as exc:
            raise RequestFailed(f"reading a response's body failed: {os_words(exc)}") from exc
        self.complete = True

    async def read(self) -> bytes:
        if self._body is None:
            self._body = b"".join([chunk async for chunk in self.iter_chunks()])
        return self._body

    async def text(self, errors: str = "strict") -> str:
        return (await self.read()).decode(self.charset, errors)

    async def json(self) -> Any:
        """The body as JSON (whatever its Content-Type says), or None when it is empty."""
        body = await self.read()
        return json.loads(body) if body.strip() else None

    @property
    def charset(self) -> str:
        for param in self.headers.get("Content-Type", "").split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                return value.strip('"')
        return "utf-8"


class HttpClient:
    """Requests to one service; ``base_url`` prefixes paths that are not whole URLs."""

    def __init__(self, base_url: str = "", *, headers: Mapping[str, str] | None = None,
                 tls: ssl.SSLContext | None = None, timeout: Timeout = Timeout(), max_idle: int = 2) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.tls = tls
        self.timeout = timeout
        self.max_idle = max_idle
        self.closed = False
        self._idle: dict[Origin, list[HttpConnection]] = {}

    def target(self, url: str) -> Target:
        return Target.of(url if "://" in url else self.base_url + url)

    @asynccontextmanager
    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None, body: Body = None,
                      timeout: Timeout | None = None) -> AsyncIterator[HttpResponse]:
        """Send a request and yield its response, the body still to read; the connection is kept for the
        next request if the body was read to its end."""
        if self.closed:
            raise RequestFailed("the client is closed")
        timeout = timeout or self.timeout
        target = self.target(url)
        async with asyncio.timeout(timeout.total) if timeout.total is not None else nullcontext():
            connection, response = await self._exchange(method, target, headers, body, timeout)
            try:
                yield response
            finally:
                self._release(connection, response)

    def get(self, url: str, **kw: Any) -> Any:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> Any:
        return self.request("POST", url, **kw)

    async def close(self) -> None:
        self.closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def _exchange(self, method: str, target: Target, headers: Mapping[str, str] | None, body: Body,
                        timeout: Timeout) -> tuple[HttpConnection, HttpResponse]:
        head, fields, chunks = self._prepare(method, target, headers, body)
        replayable = body is None or isinstance(body, bytes)
        retry_on_kept = replayable and method in _IDEMPOTENT
        while True:
            # A streamed body (an upload) gets a new connection: it cannot be sent again if a kept one broke.
            connection = self._kept(target.origin) if replayable else None
            kept = connection is not None
            if connection is None:
                connection = await HttpConnection.open(target.origin, self.tls, timeout.connect)
            try:
                await self._send(connection, head, fields, body, chunks)
                while True:  # informational answers (100 Continue) come before the response
                    answer = await connection.head(timeout.read)
                    if not 100 <= answer.status < 200:
                        return connection, HttpResponse(connection, method, answer, timeout.read)
            except BaseException as exc:
                connection.close()
                # The server had closed a kept connection as it was reused: nothing was done, send it again.
                if not (kept and retry_on_kept and isinstance(exc, RequestFailed)):
                    raise

    def _prepare(self, method: str, target: Target, extra: Mapping[str, str] | None,
                 body: Body) -> tuple[bytes, dict[str, str], AsyncIterable[bytes] | None]:
        """The request's head, its fields, and its body's chunks when it is streamed."""
        fields = {"host": target.host, "user-agent": "farmhand-agent"}
        for source in (self.headers, extra or {}):
            fields.update((name.lower(), value) for name, value in source.items())
        chunks: AsyncIterable[bytes] | None = None
        if isinstance(body, Multipart):
            fields["content-type"] = body.content_type
            fields["content-length"] = str(body.length)
            chunks = body.chunks()
        elif isinstance(body, bytes):
            fields["content-length"] = str(len(body))
        elif body is not None:
            chunks = body
            if "content-length" not in fields:
                fields["transfer-encoding"] = "chunked"
        elif method in ("POST", "PUT", "PATCH"):
            fields["content-length"] = "0"
        return request_head(method, target.path, fields), fields, chunks

    @staticmethod
    async def _send(connection: HttpConnection, head: bytes, fields: dict[str, str], body: Body,
                    chunks: AsyncIterable[bytes] | None) -> None:
        if chunks is None:
            await connection.write(head + body if isinstance(body, bytes) else head)
            return
        await connection.write(head)
        chunked, sent = fields.get("transfer-encoding") == "chunked", 0
        async for chunk in chunks:
            if chunk:
                sent += len(chunk)
                await connection.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            await connection.write(b"0\r\n\r\n")
        elif str(sent) != fields["content-length"]:  # the server would read the next request from this one
            said = fields["content-length"]
            raise RequestFailed(f"the body was {sent} bytes, not the {said} its Content-Length said")

    def _kept(self, origin: Origin) -> HttpConnection | None:
        kept = self._idle.get(origin)
        while kept:
            connection = kept.pop()
            if connection.reusable():
                connection.idle = False
                return connection
            connection.close()
        return None

    def _release(self, connection: HttpConnection, response: HttpResponse) -> None:
        if response.complete and response.keep_alive and not self.closed:
            kept = self._idle.setdefault(connection.origin, [])
            if len(kept) < self.max_idle:
                connection.idle, connection.idle_since = True, asyncio.get_running_loop().time()
                kept.append(connection)
                return
        connection.close()


def os_words(exc: BaseException) -> str:
    """The system's words for a socket error ("Connection refused"), else the exception's own."""
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__
