"""Uploaded files, stored once by SHA-256 under ``files/<sha[:2]>/<sha>``.

Uploads are streamed to a temporary file while they are hashed and checked, so
a large upload never sits in memory and a bad one is refused as soon as it is
seen. The row in ``files`` is written only after the bytes are on disk.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from urllib.parse import quote

import structlog

from hub.api.problems import HttpError
from hub.store import Store, utcnow

log = structlog.get_logger("farmhand.hub.files")

GCODE_SUFFIXES = frozenset({".gcode", ".gco", ".gc", ".g"})


class UploadError(HttpError):
    """An upload that was refused; ``status`` is the HTTP status that says why."""

    status = 422
    title = "Invalid upload"


class UploadTooLarge(UploadError):
    status = 413
    title = "Upload too large"


class InvalidUpload(UploadError):
    status = 422


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    name: str
    size: int
    created_at: str
    created: bool = False  # False when the same bytes were already stored


# Characters a name can carry without showing them: controls (NUL included) and the
# bidirectional overrides that make "gpj.exe" read as "exe.jpg".
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean_name(name: str) -> str:
    """Keep the base name a person gave; never a path, never a character nobody can see."""
    hidden = _HIDDEN.search(name)
    if hidden:
        raise InvalidUpload(f"the file name contains a control character (U+{ord(hidden.group()):04X}); "
                            "rename the file")
    base = PurePath(name.replace("\\", "/")).name.strip()
    if not base or base in (".", ".."):
        raise InvalidUpload("the file needs a name (multipart filename or ?name=)")
    if len(base) > 200:
        raise InvalidUpload(f"file name is {len(base)} characters long; at most 200")
    return base


def content_disposition(name: str) -> str:
    """``attachment`` with the name as RFC 6266 wants it: an ASCII fallback and the exact name in UTF-8.

    Also safe for names stored before control characters were refused.
    """
    fallback = "".join(c if 0x20 <= ord(c) < 0x7f and c not in '"\\' else "_" for c in name) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def too_large(limit_mb: float) -> UploadTooLarge:
    return UploadTooLarge(f"the upload is larger than the limit of {limit_mb:g} MB "
                          f"({int(limit_mb * 1024 * 1024)} bytes; max_upload_mb)")


def is_gcode(name: str) -> bool:
    return PurePath(name.lower()).suffix in GCODE_SUFFIXES


class _Sink:
    """Writes, hashes and checks one upload chunk by chunk."""

    def __init__(self, path: Path, name: str, limit_mb: float) -> None:
        self.path = path
        self.limit_mb = limit_mb
        self.limit = int(limit_mb * 1024 * 1024)
        self.size = 0
        self.hash = hashlib.sha256()
        self.text = codecs.getincrementaldecoder("utf-8")("strict") if is_gcode(name) else None
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in finish/abort

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise too_large(self.limit_mb)
        if self.text is not None:
            if b"\0" in chunk:
                at = self.size - len(chunk) + chunk.index(b"\0")
                raise InvalidUpload(f"G-code must be text: NUL byte at offset {at}")
            try:
                self.text.decode(chunk)
            except UnicodeDecodeError as exc:
                at = self.size - len(chunk) + exc.start
                raise InvalidUpload(f"G-code must be UTF-8 text: undecodable byte at offset {at}") from None
        self.hash.update(chunk)
        self.fh.write(chunk)

    def finish(self) -> str:
        if self.text is not None:
            try:
                self.text.decode(b"", final=True)
            except UnicodeDecodeError:
                raise InvalidUpload("G-code must be UTF-8 text: it ends inside a multi-byte character") from None
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        return self.hash.hexdigest()

    def abort(self) -> None:
        self.fh.close()
        self.path.unlink(missing_ok=True)


class FileStore:
    def __init__(self, root: Path, store: Store, max_mb: float) -> None:
        self.root = root
        self.store = store
        self.max_mb = max_mb
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.incoming = root / "incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)
        # Leftovers of uploads cut off by a crash are never referenced.
        for stale in self.incoming.iterdir():
            stale.unlink(missing_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    async def receive(self, chunks: AsyncIterator[bytes], name: str) -> StoredFile:
        name = clean_name(name)
        sink = _Sink(self.incoming / uuid.uuid4().hex, name, self.max_mb)
        try:
            async for chunk in chunks:
                sink.write(chunk)
            if sink.size == 0:
                raise InvalidUpload("the upload is empty")
            # fsync of a large file takes long enough to stall MQTT ingest: off the loop.
            sha = await asyncio.to_thread(self._keep, sink)
        except BaseException:
            sink.abort()
            raise
        with self.store.transaction() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO files (sha256, name, size, created_at) VALUES (?, ?, ?, ?)",
                (sha, name, sink.size, utcnow()),
            ).rowcount
        row = self.get(sha)
        assert row is not None
        log.info("file_stored", sha256=sha, name=name, size=sink.size, new=bool(inserted))
        return StoredFile(**row, created=bool(inserted))

    def _keep(self, sink: _Sink) -> str:
        """Make the upload durable under its hash; the same bytes stored before are kept as they are."""
        sha = sink.finish()
        final = self.path(sha)
        if final.exists():
            sink.path.unlink()
        else:
            final.parent.mkdir(exist_ok=True)
            os.replace(sink.path, final)
            _fsync_dir(final.parent)
        return sha

    def get(self, sha256: str) -> dict | None:
        return self.store.one("SELECT sha256, name, size, created_at FROM files WHERE sha256 = ?", (sha256,))

    def list(self) -> list[dict]:
        return self.store.all("SELECT sha256, name, size, created_at FROM files ORDER BY created_at DESC, sha256")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
