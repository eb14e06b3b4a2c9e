"""Job file cache: files fetched from the hub, kept by SHA-256, evicted least-recently-used.

A farm prints the same part many times, so a cached file is used again without
a download. A file is written to a temporary name while it is hashed, checked
against the expected hash and size, flushed to disk and only then renamed to
its hash: a power cut never leaves a truncated file under a trusted name.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import ssl
from pathlib import Path

import structlog

from agent.net import HttpClient, RequestFailed, Timeout

log = structlog.get_logger("farmhand.agent.files")

_PARTIAL = ".partial"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class FileFetchError(Exception):
    """The file could not be fetched or is not the one the hub described; the text says why."""


class JobFileCache:
    def __init__(self, dir: Path, max_bytes: int, token: str | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        """``tls``: how an https hub's certificate is checked (the farm's CA); default the system's CAs."""
        self.dir = dir
        self.max_bytes = max_bytes
        self._token = token
        self._tls = tls
        self._locks: dict[str, asyncio.Lock] = {}
        self.downloads = 0
        self.hits = 0
        dir.mkdir(parents=True, exist_ok=True)
        for stale in dir.glob(f"*{_PARTIAL}"):
            stale.unlink(missing_ok=True)

    def path_for(self, sha256: str) -> Path:
        return self.dir / sha256

    async def get(self, url: str, sha256: str, size: int) -> Path:
        """A local path whose content has ``sha256`` and ``size``, downloading it when not cached."""
        if not _SHA256.fullmatch(sha256):
            raise FileFetchError(f"not a lower-case hex SHA-256: {sha256!r}")
        if size > self.max_bytes:
            raise FileFetchError(f"file of {size} bytes is larger than the whole file cache ({self.max_bytes} bytes)")
        # Two jobs of the same file at once download it once.
        lock = self._locks.setdefault(sha256, asyncio.Lock())
        async with lock:
            path = self.path_for(sha256)
            if _has_size(path, size):
                os.utime(path)  # the mtime is the LRU clock
                self.hits += 1
                return path
            self._evict(keep=sha256, room_for=size)
            await self._download(url, sha256, size, path)
            self.downloads += 1
            return path

    async def _download(self, url: str, sha256: str, size: int, path: Path) -> None:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        http = HttpClient(tls=self._tls, timeout=Timeout(total=None, connect=10, read=60))
        partial = path.with_name(path.name + _PARTIAL)
        digest = hashlib.sha256()
        received = 0
        try:
            async with http.get(url, headers=headers) as resp:
                if resp.status != 200:
                    raise FileFetchError(f"GET {url}: HTTP {resp.status} {resp.reason or ''}".rstrip())
                with open(partial, "wb") as out:
                    async for chunk in resp.iter_chunks():
                        received += len(chunk)
                        if received > size:
                            raise FileFetchError(f"GET {url}: more than the expected {size} bytes")
                        digest.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
            if received != size:
                raise FileFetchError(f"GET {url}: got {received} bytes, expected {size}")
            actual = digest.hexdigest()
            if actual != sha256:
                raise FileFetchError(f"GET {url}: SHA-256 mismatch: expected {sha256}, got {actual}")
            os.replace(partial, path)
        except (RequestFailed, OSError) as exc:  # TimeoutError is an OSError
            partial.unlink(missing_ok=True)
            raise FileFetchError(f"GET {url}: {type(exc).__name__}: {exc}".rstrip(": ")) from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        finally:
            await http.close()
        log.info("file_downloaded", sha256=sha256, bytes=size)

    def _evict(self, keep: str, room_for: int) -> None:
        entries = []
        for p in self.dir.iterdir():
            if p.name == keep or p.name.endswith(_PARTIAL) or not p.is_file():
                continue
            st = p.stat()
            entries.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries, key=lambda e: e[0]):
            if total + room_for <= self.max_bytes:
                break
            if p.name in self._locks and self._locks[p.name].locked():
                continue  # being fetched or just handed out
            p.unlink(missing_ok=True)
            self._locks.pop(p.name, None)
            total -= size
            log.info("file_evicted", sha256=p.name, bytes=size)

    def usage(self) -> int:
        return sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file() and not p.name.endswith(_PARTIAL))


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False
