"""Rendered outputs on their way to the hub: content hashes."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def sha256_file(path: str | Path) -> str:
    """Lower-case hex SHA-256 of a file, hashed off the event loop (EXR frames run to hundreds of MB)."""
    return await asyncio.to_thread(_sha256, Path(path))
