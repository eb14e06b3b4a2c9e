"""Slicing jobs: a stored mesh sliced for a machine model, material and quality, in the background.

A job is a row in ``slice_jobs`` before it is acknowledged; it runs as an
asyncio task (``slice_mesh`` in its own process group) under a small limit of
parallel slicers. The G-code goes into the file store like an upload, with its
analysis, and the row links mesh, profile names and G-code, which is how the
queue knows the machine model a G-code was made for. The same inputs sliced
before (or being sliced) are answered with that job, not sliced again.

A hub stopped mid-slice puts the job back to queued and slices it on the next
start; only an operator's cancel makes it ``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from enum import StrEnum
from pathlib import Path, PurePath
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hub.analysis import load_machine, machine_ids
from hub.api.bodies import body, respond, row_id
from hub.api.problems import ApiProblem
from hub.api.routes import Op
from hub.files import FileAnalyses, FileStore
from hub.store import Store, utcnow
from hub.tasks import stop_tasks

from .profiles import SlicingProfiles
from .slicer import SlicerError, compose_profile, slice_mesh

log = structlog.get_logger("farmhand.hub.slicing")

CHUNK = 256 * 1024


class SliceState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


LIVE = (SliceState.QUEUED.value, SliceState.RUNNING.value)
REUSABLE = (*LIVE, SliceState.DONE.value)


class SliceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mesh_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="an uploaded STL, 3MF or OBJ")
    machine_model: str = Field(description="machine model id, e.g. prusa-mk4 (its printer layer is used)")
    material: str = Field("pla", description="filament layer: shipped or uploaded (GET /api/v1/slicing-profiles)")
    quality: str = Field("0.20mm", description="quality layer: shipped or uploaded")


class SliceJob(BaseModel):
    id: int
    mesh_sha256: str
    machine_model: str
    material: str
    quality: str
    state: SliceState
    error: str | None = Field(None, description="the slicer's own message when it failed")
    gcode_sha256: str | None = None
    gcode_url: str | None = None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None


def to_slice_job(r: dict[str, Any]) -> SliceJob:
    url = f"/api/v1/files/{r['gcode_sha256']}" if r["gcode_sha256"] else None
    return SliceJob(**{k: r[k] for k in SliceJob.model_fields if k in r}, gcode_url=url)


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            yield chunk


class SliceJobs:
    def __init__(self, store: Store, files: FileStore, analyses: FileAnalyses, profiles: SlicingProfiles,
                 work_dir: Path, *, timeout_s: float = 600.0, parallel: int = 1) -> None:
        self.store = store
        self.files = files
        self.analyses = analyses
        self.profiles = profiles
        self.work_dir = work_dir
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(parallel)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._ended: dict[int, asyncio.Event] = {}
        self._cancelling: set[int] = set()

    # ------------------------------------------------------------------ lifecycle

    def resume(self) -> int:
        """Slice again what a stopped hub left queued or running."""
        rows = self.store.all(f"SELECT id FROM slice_jobs WHERE state IN ({', '.join('?' * len(LIVE))})", LIVE)
        for r in rows:
            self._set(r["id"], state=SliceState.QUEUED.value, started_at=None)
            self._start(r["id"])
        return len(rows)

    async def stop(self) -> None:
        await stop_tasks(*self._tasks.values())

    # ------------------------------------------------------------------ jobs

    def get(self, slice_id: int) -> SliceJob:
        row = self.store.one("SELECT * FROM slice_jobs WHERE id = ?", (slice_id,))
        if row is None:
            raise ApiProblem(404, "Slice job not found", f"no slice job {slice_id}")
        return to_slice_job(row)

    async def validate(self, req: SliceRequest) -> None:
        """Refuse, with the reason, what could not be sliced; the slicer is not started for it."""
        file = self.files.get(req.mesh_sha256)
        if file is None:
            raise ApiProblem(422, "Unknown file", f"no file with sha256 {req.mesh_sha256}; upload it first")
        kind, analysis = await self.analyses.body(req.mesh_sha256)
        if kind != "mesh":
            raise ApiProblem(422, "Not a mesh", f"{file['name']!r} is {kind}; only STL, 3MF and OBJ models are sliced")
        if req.machine_model not in machine_ids():
            raise ApiProblem(422, "Unknown machine model",
                             f"no machine model {req.machine_model!r} (known: {', '.join(machine_ids())})")
        for kind, name in (("printer", req.machine_model), ("filament", req.material), ("quality", req.quality)):
            if not self.profiles.exists(kind, name):
                raise ApiProblem(422, "Unknown slicing profile", f"no {kind} profile {name!r} "
                                                                 f"(known: {', '.join(self.profiles.names(kind))})")
        if not analysis.get("fits", {}).get(req.machine_model, True):
            raise ApiProblem(422, "Does not fit", f"{file['name']!r} does not fit the build volume of "
                                                  f"{req.machine_model} in any turn about Z")

    async def submit(self, req: SliceRequest) -> tuple[SliceJob, bool]:
        """(job, created): created is False when the same inputs are already sliced or being sliced."""
        await self.validate(req)
        inputs = (req.mesh_sha256, req.machine_model, req.material, req.quality)
        same = self.store.one(
            "SELECT * FROM slice_jobs WHERE mesh_sha256 = ? AND machine_model = ? AND material = ? AND quality = ?"
            f" AND state IN ({', '.join('?' * len(REUSABLE))}) ORDER BY state = 'done' DESC, id DESC LIMIT 1",
            (*inputs, *REUSABLE))
        if same is not None:
            return to_slice_job(same), False
        slice_id = self.store.db.execute(
            "INSERT INTO slice_jobs (mesh_sha256, machine_model, material, quality, state, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)", (*inputs, SliceState.QUEUED.value, utcnow())).lastrowid
        assert slice_id is not None
        log.info("slice_queued", slice_id=slice_id, mesh=req.mesh_sha256, machine=req.machine_model,
                 material=req.material, quality=req.quality)
        self._start(slice_id)
        return self.get(slice_id), True

    async def cancel(self, slice_id: int) -> SliceJob:
        job = self.get(slice_id)
        if job.state not in LIVE:
            raise ApiProblem(409, "Slice job state conflict", f"slice job {slice_id} is already {job.state.value}")
        task = self._tasks.get(slice_id)
        if task is None:
            self._end(slice_id, SliceState.CANCELLED)
        else:
            self._cancelling.add(slice_id)
            task.cancel()
            # Answer once the slicer is dead, so a cancelled job never leaves a process behind.
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return self.get(slice_id)

    async def wait(self, slice_id: int) -> SliceJob:
        """The job once it has ended (done, failed or cancelled)."""
        while (job := self.get(slice_id)).state in LIVE:
            await self._ended.setdefault(slice_id, asyncio.Event()).wait()
        return job

    async def sliced(self, req: SliceRequest) -> SliceJob:
        """A finished slice of these inputs, slicing now if there is none; a 422 with the slicer's words if it fails."""
        job, _ = await self.submit(req)
        job = await self.wait(job.id)
        if job.state != SliceState.DONE:
            raise ApiProblem(422, "Slicing failed", job.error or f"slice job {job.id} was {job.state.value}")
        return job

    # ------------------------------------------------------------------ running

    def _set(self, slice_id: int, **fields: Any) -> None:
        self.store.db.execute(f"UPDATE slice_jobs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?",
                              (*fields.values(), slice_id))

    def _end(self, slice_id: int, state: SliceState, **fields: Any) -> None:
        self._set(slice_id, state=state.value, finished_at=utcnow(), **fields)
        event = self._ended.pop(slice_id, None)
        if event is not None:
            event.set()

    def _start(self, slice_id: int) -> None:
        task = asyncio.get_running_loop().create_task(self._run(slice_id), name=f"hub:slice:{slice_id}")
        self._tasks[slice_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(slice_id, None))

    async def _run(self, slice_id: int) -> None:
        work = self.work_dir / str(slice_id)
        try:
            async with self._slots:
                self._set(slice_id, state=SliceState.RUNNING.value, started_at=utcnow())
                gcode_sha = await self._slice(slice_id, work)
            self._end(slice_id, SliceState.DONE, gcode_sha256=gcode_sha, error=None)
        except (SlicerError, ValueError) as exc:
            log.warning("slice_job_failed", slice_id=slice_id, error=str(exc)[-500:])
            self._end(slice_id, SliceState.FAILED, error=str(exc))
        except Exception as exc:
            log.exception("slice_job_crashed", slice_id=slice_id)
            self._end(slice_id, SliceState.FAILED, error=f"the hub failed to slice: {type(exc).__name__}: {exc}")
        except asyncio.CancelledError:
            if slice_id in self._cancelling:
                self._cancelling.discard(slice_id)
                log.info("slice_cancelled", slice_id=slice_id)
                self._end(slice_id, SliceState.CANCELLED)
            else:
                self._set(slice_id, state=SliceState.QUEUED.value, started_at=None)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _slice(self, slice_id: int, work: Path) -> str:
        row = self.store.one("SELECT s.*, f.name FROM slice_jobs s JOIN files f ON f.sha256 = s.mesh_sha256"
                             " WHERE s.id = ?", (slice_id,))
        assert row is not None
        machine = load_machine(row["machine_model"])
        profile = compose_profile(machine, row["material"], row["quality"], out_dir=work,
                                  layer_dirs=[self.profiles.root])
        # PrusaSlicer tells formats apart by the file name's suffix; stored files have none.
        name = PurePath(row["name"])
        mesh = work / f"model{name.suffix.lower()}"
        mesh.symlink_to(self.files.path(row["mesh_sha256"]))
        result = await slice_mesh(mesh, profile, work / "out.gcode", timeout_s=self.timeout_s, machine=machine)
        out_name = f"{name.stem}_{row['machine_model']}_{row['material']}_{row['quality']}.gcode"
        stored = await self.files.receive(_chunks(result.gcode), out_name)
        self.analyses.record(stored.sha256, "gcode", result.analysis.model_dump(mode="json"))
        log.info("slice_done", slice_id=slice_id, gcode=stored.sha256, slicer_s=round(result.slicer_s, 2))
        return stored.sha256

    # ------------------------------------------------------------------ HTTP

    def ops(self) -> list[Op]:
        async def post(request: web.Request) -> web.Response:
            job, created = await self.submit(await body(request, SliceRequest))
            return respond(job, 202 if created else 200)

        async def get(request: web.Request) -> web.Response:
            return respond(self.get(row_id(request)))

        async def cancel(request: web.Request) -> web.Response:
            return respond(await self.cancel(row_id(request)))

        return [
            Op("POST", "/api/v1/slice", post, body=SliceRequest, response=SliceJob, status=202, tags=("slicing",),
               summary="Slice a mesh in the background (200 with the earlier job when these inputs were sliced)"),
            Op("GET", "/api/v1/slice/{id}", get, response=SliceJob, tags=("slicing",), summary="One slice job"),
            Op("POST", "/api/v1/slice/{id}/cancel", cancel, response=SliceJob, tags=("slicing",),
               summary="Cancel a slice job; a running slicer is killed before this answers"),
        ]
