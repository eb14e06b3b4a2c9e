"""Rendered frames: received from render nodes, listed, and handed out one by one or as a streamed zip.

A frame's bytes go into the hub's file store (content-addressed, fsynced);
its row in ``render_outputs`` is committed before the upload is answered, so
a frame the node was told is stored is stored. The node's ``sha256`` field is
checked against the bytes: a mismatch is refused (and the node retries the
task), never kept under the wrong name.
"""

from __future__ import annotations

import sqlite3
import zipfile
from collections.abc import AsyncIterator
from pathlib import PurePath
from typing import Any

import structlog
from aiohttp import BodyPartReader, web

from hub.files import FileStore
from hub.ids import ascii_int
from hub.jobs import JobError
from hub.store import Store, utcnow

from .schemas import RenderOutput, StoredOutput
from .tasks import load_job, load_task, parse_wire

log = structlog.get_logger("farmhand.hub.render.outputs")

CHUNK = 256 * 1024


class OutputRefused(JobError):
    status = 422
    title = "Invalid render output"


class OutputNotFound(JobError):
    status = 404
    title = "Render output not found"


class _ZipSink:
    """A write-only file for ``zipfile`` that hands over what it was given, so the zip is streamed."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


class RenderOutputs:
    def __init__(self, store: Store, files: FileStore) -> None:
        self.store = store
        self.files = files
        self.received = 0
        self.refused = 0

    async def receive(self, reader: Any) -> StoredOutput:
        """One multipart upload from a render node: task_id, frame, sha256, then file."""
        fields: dict[str, str] = {}
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file":
                return await self._store_file(part, fields)
            if part.name in ("task_id", "frame", "sha256"):
                fields[part.name] = (await part.read_chunk(1024)).decode(errors="replace").strip()
        self.refused += 1
        raise OutputRefused("multipart upload without a 'file' field")

    async def _store_file(self, part: BodyPartReader, fields: dict[str, str]) -> StoredOutput:
        task_id, frame, claimed = fields.get("task_id", ""), fields.get("frame", ""), fields.get("sha256", "")
        ids = parse_wire(task_id)
        task = load_task(self.store.db, ids[0]) if ids else None
        if task is None:
            return self._refuse(f"no render task {task_id!r}", OutputNotFound)
        number = ascii_int(frame, signed=True)
        if number is None or not task["frame_start"] <= number <= task["frame_end"]:
            return self._refuse(f"frame {frame!r} is not in task {task_id} "
                                f"({task['frame_start']}-{task['frame_end']})")
        if len(claimed) != 64:
            return self._refuse("the sha256 field must come before the file and hold 64 hex digits")

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await part.read_chunk(CHUNK):
                yield chunk

        name = PurePath((part.filename or f"frame_{int(frame):04d}").replace("\\", "/")).name
        stored = await self.files.receive(chunks(), name)
        if stored.sha256 != claimed.lower():
            if stored.created:
                self._drop_orphan(stored.sha256)
            return self._refuse(f"sha256 field {claimed} does not match the bytes received ({stored.sha256})")
        preview = task["kind"] == "preview"
        with self.store.transaction() as db:
            db.execute("INSERT OR REPLACE INTO render_outputs (job_id, preview, frame, task_id, sha256, name, size,"
                       " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (task["job_id"], int(preview), int(frame), task["id"], stored.sha256, name, stored.size,
                        utcnow()))
        self.received += 1
        log.info("render_output_stored", job_id=task["job_id"], task_id=task["id"], frame=int(frame),
                 preview=preview, sha256=stored.sha256, size=stored.size)
        return StoredOutput(job_id=task["job_id"], task_id=task["id"], frame=int(frame), preview=preview,
                            sha256=stored.sha256)

    def _refuse(self, detail: str, error: type[JobError] = OutputRefused) -> Any:
        self.refused += 1
        log.warning("render_output_refused", detail=detail)
        raise error(detail)

    def _drop_orphan(self, sha256: str) -> None:
        try:
            with self.store.transaction() as db:
                db.execute("DELETE FROM files WHERE sha256 = ?", (sha256,))
        except sqlite3.IntegrityError:
            return  # something refers to these bytes after all: keep them
        self.files.path(sha256).unlink(missing_ok=True)

    # ------------------------------------------------------------------ reading

    def list(self, job_id: int) -> list[RenderOutput]:
        self._job(job_id)
        rows = self.store.all("SELECT * FROM render_outputs WHERE job_id = ? ORDER BY preview DESC, frame", (job_id,))
        return [_output(r) for r in rows]

    def get(self, job_id: int, frame: int, preview: bool) -> dict[str, Any]:
        self._job(job_id)
        row = self.store.one("SELECT * FROM render_outputs WHERE job_id = ? AND frame = ? AND preview = ?",
                             (job_id, frame, int(preview)))
        if row is None:
            raise OutputNotFound(f"render job {job_id} has no {'preview ' if preview else ''}frame {frame} yet")
        return row

    def _job(self, job_id: int) -> None:
        if load_job(self.store.db, job_id) is None:
            raise OutputNotFound(f"no render job {job_id}")

    async def zip(self, request: web.Request, job_id: int, preview: bool) -> web.StreamResponse:
        """Every final frame (or preview frame) of a job, stored uncompressed: images are compressed already."""
        rows = [r for r in self.store.all("SELECT * FROM render_outputs WHERE job_id = ? AND preview = ?"
                                          " ORDER BY frame", (job_id, int(preview)))]
        self._job(job_id)
        resp = web.StreamResponse(headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="render-{job_id}{"-preview" if preview else ""}.zip"'})
        await resp.prepare(request)
        sink = _ZipSink()
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[arg-type]
            for row in rows:
                suffix = PurePath(row["name"]).suffix
                with archive.open(f"frame_{row['frame']:06d}{suffix}", "w", force_zip64=True) as entry, \
                        self.files.path(row["sha256"]).open("rb") as src:
                    while chunk := src.read(CHUNK):
                        entry.write(chunk)
                        await resp.write(sink.take())
                await resp.write(sink.take())
        await resp.write(sink.take())
        await resp.write_eof()
        return resp


def _output(r: dict[str, Any]) -> RenderOutput:
    kind = "?preview=true" if r["preview"] else ""
    return RenderOutput(frame=r["frame"], preview=bool(r["preview"]), sha256=r["sha256"], name=r["name"],
                        size=r["size"], render_s=r["render_s"],
                        device=f"{r['node']}/{r['device']}" if r["node"] else None, created_at=r["created_at"],
                        url=f"/api/v1/render-jobs/{r['job_id']}/outputs/{r['frame']}{kind}")
