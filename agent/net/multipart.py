"""A job file on its way to a printer: read in chunks off the loop, its progress logged, in a multipart form
when the printer's API wants one (OctoPrint, Moonraker, the hub's render upload)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHUNK = 64 * 1024
"""Bytes read at a time: small reads keep the threads' freed blocks (which glibc keeps per thread) small."""


async def file_chunks(path: Path, log: Any = None, *, log_every: float = 0.1) -> AsyncIterator[bytes]:
    """``path``'s bytes, read on a worker thread; each ``log_every`` of the file sent is logged on ``log``."""
    size = max(1, path.stat().st_size)
    sent, next_log = 0, log_every
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            sent += len(chunk)
            if log is not None and sent / size >= next_log:
                log.info("uploading", sent=sent, total=size, percent=min(100, round(100 * sent / size)))
                next_log = sent / size + log_every
            yield chunk


@dataclass(frozen=True, slots=True)
class _File:
    name: str
    path: Path
    filename: str
    content_type: str
    log: Any


class Multipart:
    """A ``multipart/form-data`` body of text fields and files, its length known before it is sent."""

    def __init__(self) -> None:
        self.boundary = f"farmhand-{secrets.token_hex(16)}"
        self._parts: list[tuple[bytes, str | _File]] = []

    def field(self, name: str, value: str) -> Multipart:
        self._parts.append((self._head(f'form-data; name="{_quoted(name)}"', None), value))
        return self

    def file(self, name: str, path: Path, *, filename: str | None = None,
             content_type: str = "application/octet-stream", log: Any = None) -> Multipart:
        """A file part, read from ``path`` as the body is sent (its progress logged on ``log``)."""
        filename = filename or path.name
        head = self._head(f'form-data; name="{_quoted(name)}"; filename="{_quoted(filename)}"', content_type)
        self._parts.append((head, _File(name, path, filename, content_type, log)))
        return self

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def length(self) -> int:
        total = len(self._end)
        for head, part in self._parts:
            total += len(head) + 2  # the part's closing CRLF
            total += part.path.stat().st_size if isinstance(part, _File) else len(part.encode())
        return total

    async def chunks(self) -> AsyncIterator[bytes]:
        for head, part in self._parts:
            yield head
            if isinstance(part, _File):
                async for chunk in file_chunks(part.path, part.log):
                    yield chunk
            else:
                yield part.encode()
            yield b"\r\n"
        yield self._end

    @property
    def _end(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()

    def _head(self, disposition: str, content_type: str | None) -> bytes:
        lines = [f"--{self.boundary}", f"Content-Disposition: {disposition}"]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _quoted(value: str) -> str:
    """A name as a quoted-string of the form (browsers' escaping: quotes and line breaks percent-encoded)."""
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
