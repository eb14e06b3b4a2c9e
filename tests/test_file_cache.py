"""The job file cache against a real HTTP server: verified downloads, cache hits, LRU eviction."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from agent.files import FileFetchError, JobFileCache

from .agent_support import FileServer, wait_for


def _age(path: Path, seconds_ago: float) -> None:
    """Backdate a cached file's last use (the cache's LRU clock is the mtime)."""
    t = path.stat().st_mtime - seconds_ago
    os.utime(path, (t, t))


async def test_a_download_is_verified_and_stored_under_its_hash(tmp_path: Path) -> None:
    content = b"G28\nG1 X10 Y10\n" * 1000
    async with FileServer(token="s3cret") as server:
        cache = JobFileCache(tmp_path / "files", 1 << 20, token="s3cret")
        url, sha, size = server.add(content)
        path = await cache.get(url, sha, size)
        assert path == tmp_path / "files" / sha
        assert path.read_bytes() == content
        assert server.requests == [(f"/files/{sha}", "Bearer s3cret")]
        assert list((tmp_path / "files").iterdir()) == [path]  # no temporary left behind


async def test_a_cached_file_is_not_downloaded_again(tmp_path: Path) -> None:
    async with FileServer() as server:
        cache = JobFileCache(tmp_path / "files", 1 << 20)
        url, sha, size = server.add(b"G28\n")
        first = await cache.get(url, sha, size)
        again = await asyncio.gather(cache.get(url, sha, size), cache.get(url, sha, size))
        assert again == [first, first]
        assert len(server.requests) == 1 and cache.hits == 2


async def test_two_jobs_of_one_new_file_download_it_once(tmp_path: Path) -> None:
    async with FileServer() as server:
        cache = JobFileCache(tmp_path / "files", 1 << 20)
        url, sha, size = server.add(b"G28\n" * 100)
        paths = await asyncio.gather(cache.get(url, sha, size), cache.get(url, sha, size))
        assert paths[0] == paths[1] and paths[0].read_bytes() == b"G28\n" * 100
        assert len(server.requests) == 1


async def test_a_hash_mismatch_names_both_hashes_and_keeps_nothing(tmp_path: Path) -> None:
    async with FileServer() as server:
        cache = JobFileCache(tmp_path / "files", 1 << 20)
        url, sha, size = server.add(b"G1 X1\n", served=b"G1 X2\n")
        with pytest.raises(FileFetchError) as err:
            await cache.get(url, sha, size)
        assert sha in str(err.value) and hashlib.sha256(b"G1 X2\n").hexdigest() in str(err.value)
        assert list((tmp_path / "files").iterdir()) == []


@pytest.mark.parametrize(
    ("served", "message"),
    [(b"short", "got 5 bytes, expected 6"), (b"longer than said", "more than the expected 6 bytes")],
)
async def test_a_file_of_the_wrong_size_is_rejected(tmp_path: Path, served: bytes, message: str) -> None:
    async with FileServer() as server:
        cache = JobFileCache(tmp_path / "files", 1 << 20)
        url, sha, size = server.add(b"G28 X\n", served=served)
        with pytest.raises(FileFetchError, match=message):
            await cache.get(url, sha, size)
        assert list((tmp_path / "files").iterdir()) == []


async def test_http_errors_are_reported_with_the_status(tmp_path: Path) -> None:
    async with FileServer(token="right") as server:
        url, sha, size = server.add(b"G28\n")
        with pytest.raises(FileFetchError, match="HTTP 401"):
            await JobFileCache(tmp_path / "a", 1 << 20, token="wrong").get(url, sha, size)
        with pytest.raises(FileFetchError, match="HTTP 404"):
            await JobFileCache(tmp_path / "b", 1 << 20, token="right").get(url.replace(sha, "0" * 64), "0" * 64, 4)
    with pytest.raises(FileFetchError, match="ConnectFailed: cannot connect to 127.0.0.1:[0-9]+: Connection refused"):
        await JobFileCache(tmp_path / "c", 1 << 20).get(url, sha, size)  # the server is gone


async def test_least_recently_used_files_are_evicted_to_make_room(tmp_path: Path) -> None:
    async with FileServer() as server:
        cache = JobFileCache(tmp_path / "files", 2500)
        a, b, c = (server.add(bytes([n]) * 1000) for n in (1, 2, 3))
        path_a = await cache.get(*a)
        path_b = await cache.get(*b)
        _age(path_a, 20)
        _age(path_b, 10)
        await cache.get(*a)  # a hit makes a the most recently used
        path_c = await cache.get(*c)
        assert path_a.exists() and path_c.exists() and not path_b.exists()
        assert cache.usage() <= 2500


async def test_the_file_being_fetched_is_never_evicted_even_when_alone_it_nearly_fills_the_cache(
    tmp_path: Path,
) -> None:
    async with FileServer() as server:
        cache = JobFileCache(tmp_path / "files", 1000)
        small, big = server.add(b"x" * 300), server.add(b"y" * 1000)
        await cache.get(*small)
        path = await cache.get(*big)
        assert path.read_bytes() == b"y" * 1000 and cache.usage() == 1000
        with pytest.raises(FileFetchError, match="larger than the whole file cache"):
            await cache.get(*server.add(b"z" * 1001))


async def test_an_interrupted_download_leaves_no_partial_file(tmp_path: Path) -> None:
    async with FileServer() as server:
        cache = JobFileCache(tmp_path / "files", 1 << 20)
        server.flowing.clear()
        fetch = asyncio.create_task(cache.get(*server.add(b"G28\n" * 100)))
        await wait_for(lambda: [p.suffix for p in (tmp_path / "files").iterdir()] == [".partial"],
                       what="the download to begin")
        fetch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fetch
        assert list((tmp_path / "files").iterdir()) == []
