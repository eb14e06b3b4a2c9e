"""HTTP/1.1 on the wire (RFC 9112), as a client needs it: a request's head, a response's head and its body's
framing (a length, chunks, or until the connection closes).

Ours rather than h11's: a PrusaLink printer is polled once a second, and h11's pure-Python state machine
(each header checked against regular expressions, five events an exchange) made an agent's GET cost
about 380 us of CPU on a small virtualised machine against aiohttp's 270. Here a response's head is
found by the stream's own C search and split once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from .errors import RequestFailed

T = TypeVar("T")

READ_SIZE = 64 * 1024
"""Bytes read from a connection at a time; also the longest response head or chunk-size line taken."""
_NO_BODY_STATUS = (204, 304)


def request_head(method: str, target: str, fields: Mapping[str, str]) -> bytes:
    """The request line and header fields; a CR or LF in any of them (a header injected) is refused."""
    text = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    if text.count("\n") != len(fields) + 1 or text.count("\r") != len(fields) + 1:
        raise RequestFailed("a CR or LF inside the request line or a header field")
    return (text + "\r\n").encode("latin-1")


@dataclass(frozen=True, slots=True)
class Head:
    """A response's status line and header fields (names in lower case, repeated fields joined by ", ")."""

    status: int
    reason: str
    fields: dict[str, str]
    version: str  # HTTP/1.1 or HTTP/1.0

    def tokens(self, name: str) -> list[str]:
        return [token.strip().lower() for token in self.fields.get(name, "").split(",") if token.strip()]

    @property
    def keep_alive(self) -> bool:
        """HTTP/1.1 without "Connection: close": the connection may serve another request."""
        return self.version == "HTTP/1.1" and "close" not in self.tokens("connection")


async def timed(awaitable: Awaitable[T], seconds: float | None) -> T:
    if seconds is None:
        return await awaitable
    async with asyncio.timeout(seconds):
        return await awaitable


async def read_head(reader: asyncio.StreamReader, read_timeout: float | None) -> Head:
    """The next response head; ``RequestFailed`` for a closed connection or one that is not HTTP/1.x."""
    try:
        raw = await timed(reader.readuntil(b"\r\n\r\n"), read_timeout)
    except asyncio.IncompleteReadError as exc:
        raise RequestFailed("the connection closed before a response" if not exc.partial
                        else "the connection closed inside a response's head") from None
    except asyncio.LimitOverrunError:
        raise RequestFailed(f"a response head over {READ_SIZE} bytes") from None
    lines = raw[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not (len(code) == 3 and code.isdigit()):
        raise RequestFailed(f"not an HTTP/1.x response: {lines[0][:80]!r}")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise RequestFailed(f"a malformed header field: {line[:80]!r}")
        key, value = name.lower(), value.strip()
        fields[key] = f"{fields[key]}, {value}" if key in fields else value
    return Head(int(code), reason.strip(), fields, version)


def framing(method: str, head: Head) -> int | str | None:
    """How the body is delimited: None (no body), its length, "chunked", or "close" (until the peer closes)."""
    if method == "HEAD" or head.status in _NO_BODY_STATUS or 100 <= head.status < 200:
        return None
    codings = head.tokens("transfer-encoding")
    if codings:
        if codings[-1] != "chunked":
            return "close"
        return "chunked"
    length = head.fields.get("content-length")
    if length is None:
        return "close"
    if not length.isdigit() or len({part.strip() for part in length.split(",")}) != 1:
        raise RequestFailed(f"a malformed Content-Length: {length!r}")
    return int(length)


async def body_chunks(reader: asyncio.StreamReader, frame: int | str | None,
                      read_timeout: float | None) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive, framed as ``framing`` said; ``RequestFailed`` if it ends short."""
    try:
        if isinstance(frame, int):
            async for data in _exactly(reader, frame, read_timeout):
                yield data
        elif frame == "chunked":
            while size := _chunk_size(await timed(reader.readuntil(b"\r\n"), read_timeout)):
                async for data in _exactly(reader, size, read_timeout):
                    yield data
                if await timed(reader.readexactly(2), read_timeout) != b"\r\n":
                    raise RequestFailed("a chunk not followed by CRLF")
            while await timed(reader.readuntil(b"\r\n"), read_timeout) != b"\r\n":
                pass  # trailer fields: nothing we use
        elif frame == "close":
            while data := await timed(reader.read(READ_SIZE), read_timeout):
                yield data
    except asyncio.IncompleteReadError:
        raise RequestFailed("the connection closed inside a response's body") from None
    except asyncio.LimitOverrunError:
        raise RequestFailed("a chunk-size line over the limit") from None


async def _exactly(reader: asyncio.StreamReader, size: int, read_timeout: float | None) -> AsyncIterator[bytes]:
    while size:
        data = await timed(reader.read(min(READ_SIZE, size)), read_timeout)
        if not data:
            raise RequestFailed(f"the connection closed with {size} bytes of the body still to come")
        size -= len(data)
        yield data


def _chunk_size(line: bytes) -> int:
    text = line[:-2].split(b";", 1)[0].strip()
    if not text or text.strip(b"0123456789abcdefABCDEF"):
        raise RequestFailed(f"a malformed chunk size: {text[:20]!r}")
    return int(text, 16)
