"""Analysis of stored files — meshes (STL, 3MF, OBJ) and G-code — kept in ``file_analyses``
and served over HTTP.

Analysis runs in a worker process: trimesh and the G-code interpreter hold the
GIL for seconds on a big file, which in a thread would still stall MQTT ingest.
A file is analysed once; a failure (a hostile or broken file) is stored too,
with its reason, and answered as a 422.
"""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path, PurePath
from typing import Any

import structlog
from aiohttp import web

from .analysis import analyze_gcode, analyze_mesh, load_machine, machine_ids
from .analysis.mesh import FORMATS
from .api import ApiProblem
from .files import GCODE_SUFFIXES, FileStore
from .store import Store, utcnow
from .webkit import respond

log = structlog.get_logger("farmhand.hub.file_analysis")

MAX_MESH_BYTES = 256 * 1024 * 1024
MAX_UNZIPPED_BYTES = 512 * 1024 * 1024


def kind_of(name: str) -> str | None:
    suffix = PurePath(name.lower()).suffix
    if suffix in GCODE_SUFFIXES:
        return "gcode"
    if suffix.lstrip(".") in FORMATS:
        return "mesh"
    return None


def analyze(path: str, name: str, kind: str, machine: str | None = None) -> dict[str, Any]:
    """In the worker: the analysis as JSON-ready data; raises ValueError for a file we refuse."""
    if kind == "gcode":
        result = analyze_gcode(Path(path), load_machine(machine) if machine else None)
        return result.model_dump(mode="json")
    # The mesh loader trusts the suffix only after checking the bytes; give it the upload's.
    with tempfile.TemporaryDirectory(prefix="farmhand-mesh-") as tmp:
        link = Path(tmp) / f"model{PurePath(name.lower()).suffix}"
        os.symlink(path, link)
        mesh = analyze_mesh(link, max_bytes=MAX_MESH_BYTES, max_unzipped=MAX_UNZIPPED_BYTES)
    data = mesh.model_dump(mode="json")
    data["fits"] = {m: mesh.fits(load_machine(m).build_volume) for m in machine_ids()}
    return data


class FileAnalyses:
    def __init__(self, store: Store, files: FileStore) -> None:
        self.store = store
        self.files = files
        self._pool: ProcessPoolExecutor | None = None
        self._running: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def stored(self, sha: str) -> dict[str, Any] | None:
        return self.store.one("SELECT * FROM file_analyses WHERE sha256 = ?", (sha,))

    def record(self, sha: str, kind: str, body: dict[str, Any]) -> None:
        """Keep an analysis made elsewhere (the slicer's, of its own G-code) so the file is not analysed again."""
        self.store.db.execute(
            "INSERT OR IGNORE INTO file_analyses (sha256, kind, ok, error, body, analyzed_at)"
            " VALUES (?, ?, 1, NULL, ?, ?)",
            (sha, kind, json.dumps(body), utcnow()))

    async def ensure(self, sha: str, machine: str | None = None) -> dict[str, Any]:
        """The stored analysis row of a file, analysing it first if it never was."""
        row = self.stored(sha)
        if row is not None:
            return row
        running = self._running.get(sha)
        if running is None:
            running = self._running[sha] = asyncio.ensure_future(self._analyze(sha, machine))
            running.add_done_callback(lambda _: self._running.pop(sha, None))
        return await asyncio.shield(running)

    async def _analyze(self, sha: str, machine: str | None) -> dict[str, Any]:
        file = self.files.get(sha)
        if file is None:
            raise ApiProblem(404, "File not found", f"no file with sha256 {sha}")
        kind = kind_of(file["name"])
        if kind is None:
            raise ApiProblem(422, "Not analysable", f"{file['name']!r}: only G-code and STL, 3MF or OBJ models "
                                                     "are analysed")
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        loop = asyncio.get_running_loop()
        try:
            body, error = await loop.run_in_executor(self._pool, analyze, str(self.files.path(sha)), file["name"],
                                                     kind, machine), None
        except ValueError as exc:
            body, error = None, str(exc)
        self.store.db.execute(
            "INSERT OR REPLACE INTO file_analyses (sha256, kind, ok, error, body, analyzed_at) VALUES (?, ?, ?, ?, ?, ?)",
            (sha, kind, int(error is None), error, json.dumps(body) if body is not None else None, utcnow()))
        log.info("file_analyzed", sha256=sha, kind=kind, ok=error is None, error=error)
        row = self.stored(sha)
        assert row is not None
        return row

    async def body(self, sha: str) -> tuple[str, dict[str, Any]]:
        """(kind, analysis); a 422 problem with the reason when the file was refused."""
        row = await self.ensure(sha)
        if not row["ok"]:
            raise ApiProblem(422, "Invalid file", row["error"])
        return row["kind"], json.loads(row["body"])

    # ------------------------------------------------------------------ HTTP

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/v1/files/{sha256}/analysis", self._get_analysis),
                web.get("/api/v1/files/{sha256}/thumbnail", self._get_thumbnail)]

    async def _get_analysis(self, request: web.Request) -> web.Response:
        kind, data = await self.body(request.match_info["sha256"])
        if kind == "gcode":
            # The image bytes are served by /thumbnail; the list says which there are.
            data["thumbnails"] = [{k: v for k, v in t.items() if k != "data"} for t in data["thumbnails"]]
        return respond({"kind": kind, **data})

    async def _get_thumbnail(self, request: web.Request) -> web.Response:
        kind, data = await self.body(request.match_info["sha256"])
        pngs = [t for t in data.get("thumbnails", []) if t["format"] == "PNG"]
        if not pngs:
            raise ApiProblem(404, "No thumbnail", "the file carries no PNG thumbnail")
        best = max(pngs, key=lambda t: t["width"] * t["height"])
        # pydantic writes bytes as URL-safe base64 (ser_json_bytes="base64"); the standard alphabet dropped its - and _.
        return web.Response(body=base64.urlsafe_b64decode(best["data"]), content_type="image/png")
