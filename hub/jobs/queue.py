"""Print jobs with constraints, and what operators do to the queue: hold, release, move,
re-prioritise; plus the retry policy for failed jobs.

A job and its requirements are written in one transaction (``JobService.create``
nests as a savepoint), so the scheduler never sees a job without its rules.
What the file itself dictates — its extent, the filament it needs, the
machine model a G-code was sliced for — comes from its stored analysis.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import structlog
from pydantic import BaseModel, Field
from sqlite_utils import Database

from hub.api import ApiProblem, RowId
from hub.files import FileAnalyses
from hub.store import Store

from . import service as jobs
from .schemas import Job, JobCreate, JobState
from .matching import why_not
from .service import JobService
from .snapshot import free_printers, normalize_color, queued_need

log = structlog.get_logger("farmhand.hub.queue")


class Requirements(BaseModel):
    material: str | None = Field(None, max_length=20, description="material type that must be loaded, e.g. PETG")
    color: str | None = Field(None, pattern=r"^#?[0-9A-Fa-f]{6}$", description="hex colour that must be loaded")
    nozzle_diameter: float | None = Field(None, gt=0, le=5)
    machine_model: str | None = Field(None, description="default: the model the G-code was sliced for here")
    tags: list[str] = Field(default_factory=list, max_length=20, description="the printer must carry all of them")
    deadline: str | None = Field(None, description="ISO 8601; earlier deadlines run first within a priority")
    retries: int = Field(0, ge=0, le=10, description="how often a failed print is queued again")
    hold: bool = Field(False, description="queue it held: it runs after a release")


class PrintJobCreate(JobCreate, Requirements):
    pass


class JobRequirements(BaseModel):
    """What a job needs of a printer, as the scheduler reads it (only ``job_id`` for a job without any)."""

    job_id: int
    material: str | None = None
    color: str | None = None
    nozzle_diameter: float | None = None
    machine_model: str | None = None
    sliced_material: str | None = Field(None, description="the material the G-code was sliced for")
    mesh: int | None = Field(None, description="1: the file is a mesh")
    size_x: float | None = None
    size_y: float | None = None
    size_z: float | None = None
    filament_mm: float | None = None
    tags: list[str] | None = None
    deadline: str | None = None
    held: int | None = None
    rank: float | None = Field(None, description="place in the queue within its priority")
    retries_left: int | None = None
    order_item_id: int | None = None
    spool_id: int | None = None
    waiting_for: list[str] = Field(
        default_factory=list, description="why a queued job has not started: each free printer's refusal, or none free")


class QueuedJob(BaseModel):
    job: Job
    requirements: JobRequirements


class QueueMove(BaseModel):
    priority: int | None = Field(None, ge=-1000, le=1000)
    before: RowId | None = Field(None, description="place it just ahead of this queued job")


def _size(analysis: dict[str, Any]) -> tuple[float, float, float] | None:
    box = analysis.get("bbox")
    if not box:
        return None
    return tuple(hi - lo for lo, hi in zip(box["min"], box["max"], strict=True))  # type: ignore[return-value]


def requirement_row(req: Requirements, kind: str | None, analysis: dict[str, Any] | None,
                    sliced_for: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "material": req.material.upper() if req.material else None, "color": normalize_color(req.color),
        "nozzle_diameter": req.nozzle_diameter, "machine_model": req.machine_model or sliced_for,
        "tags": json.dumps(sorted(set(req.tags))), "deadline": req.deadline, "held": int(req.hold),
        "retries_left": req.retries, "mesh": int(kind == "mesh"),
    }
    if analysis is not None:
        size = _size(analysis)
        if size is not None:
            row.update(size_x=size[0], size_y=size[1], size_z=size[2])
        if kind == "gcode":
            row["filament_mm"] = sum(t["filament_mm"] for t in analysis.get("extrusion", [])) or None
            types = analysis.get("metadata", {}).get("filament_type") or []
            row["sliced_material"] = types[0].upper() if types else None
    return row


class PrintQueue:
    def __init__(self, store: Store, service: JobService, analyses: FileAnalyses,
                 on_change: Callable[[], None]) -> None:
        self.store = store
        self.service = service
        self.analyses = analyses
        self.on_change = on_change
        self.retried = 0

    async def submit(self, spec: PrintJobCreate, order_item_id: int | None = None) -> tuple[Job, bool]:
        analysis_row = await self.analyses.ensure(spec.file_sha256) if self.store.one(
            "SELECT 1 FROM files WHERE sha256 = ?", (spec.file_sha256,)) else None
        return self.submit_analysed(spec, analysis_row, order_item_id)

    def submit_analysed(self, spec: PrintJobCreate, analysis_row: dict[str, Any] | None,
                        order_item_id: int | None = None, db: Database | None = None) -> tuple[Job, bool]:
        if analysis_row is not None and not analysis_row["ok"]:
            raise ApiProblem(422, "Invalid file", analysis_row["error"])
        if analysis_row is not None and analysis_row["kind"] == "mesh":
            # Mesh jobs would be sliced on assignment; until then they would wait forever.
            raise ApiProblem(422, "Not printable yet", "the file is a mesh: slice it first (POST /api/v1/slice) "
                                                       "and submit the G-code")
        analysis = json.loads(analysis_row["body"]) if analysis_row else None
        kind = analysis_row["kind"] if analysis_row else None
        sliced = self.store.one("SELECT machine_model FROM slice_jobs WHERE gcode_sha256 = ? LIMIT 1",
                                (spec.file_sha256,))
        base = JobCreate(**spec.model_dump(include=set(JobCreate.model_fields)))
        row = requirement_row(spec, kind, analysis, sliced["machine_model"] if sliced else None)
        with self.store.transaction() as tx:
            job, created = self.service.create(base)
            if created:
                row.update(job_id=job.id, order_item_id=order_item_id)
                tx.execute(f"INSERT INTO job_requirements ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                           tuple(row.values()))
        self.on_change()
        return job, created

    def requirements(self, job_id: int) -> JobRequirements:
        self.service.get(job_id)
        r = self.store.one("SELECT * FROM job_requirements WHERE job_id = ?", (job_id,)) or {"job_id": job_id}
        if "tags" in r:
            r["tags"] = json.loads(r["tags"])
        r["waiting_for"] = self.waiting_for(job_id)
        return JobRequirements(**r)

    def waiting_for(self, job_id: int) -> list[str]:
        """Why a queued job has not started: what keeps it off each free printer, or that none is free.

        Empty when it is not queued, is held (``held`` says so), or may start on the scheduler's next pass.
        """
        need = queued_need(self.store.db, job_id)
        if need is None:
            return []
        printers = free_printers(self.store.db)
        if not printers:
            return ["no printer is free: each is printing, offline or waiting for its bed to be cleared"]
        return [f"{p.node}/{p.device}: {reason}" for p in printers if (reason := why_not(need, p))]

    def _queued(self, job_id: int) -> None:
        if self.service.get(job_id).state != JobState.QUEUED:
            raise ApiProblem(409, "Job state conflict", f"job {job_id} is not queued")

    def _set(self, job_id: int, **fields: Any) -> None:
        self.store.db.execute("INSERT OR IGNORE INTO job_requirements (job_id) VALUES (?)", (job_id,))
        self.store.db.execute(f"UPDATE job_requirements SET {', '.join(f'{k} = ?' for k in fields)} WHERE job_id = ?",
                              (*fields.values(), job_id))

    def hold(self, job_id: int, held: bool) -> Job:
        self._queued(job_id)
        self._set(job_id, held=int(held))
        log.info("job_held" if held else "job_released", job_id=job_id)
        self.on_change()
        return self.service.get(job_id)

    def set_deadline(self, job_ids: list[int], deadline: str | None) -> None:
        """A new deadline for those of the jobs still queued (an order's changed); started ones keep theirs."""
        queued = [j for j in job_ids if self.service.get(j).state == JobState.QUEUED]
        for job_id in queued:
            self._set(job_id, deadline=deadline)
        if queued:
            self.on_change()

    def move(self, job_id: int, move: QueueMove) -> Job:
        self._queued(job_id)
        with self.store.transaction() as db:
            if move.priority is not None:
                jobs.set_fields(db, job_id, priority=move.priority)
            if move.before is not None:
                self._queued(move.before)
                rank = lambda jid: db.execute(  # noqa: E731
                    "SELECT COALESCE(r.rank, j.id) FROM jobs j LEFT JOIN job_requirements r ON r.job_id = j.id"
                    " WHERE j.id = ?", (jid,)).fetchone()[0]
                target = rank(move.before)
                prev = db.execute(
                    "SELECT MAX(COALESCE(r.rank, j.id)) FROM jobs j LEFT JOIN job_requirements r ON r.job_id = j.id"
                    " WHERE j.state = 'queued' AND COALESCE(r.rank, j.id) < ? AND j.id != ?",
                    (target, job_id)).fetchone()[0]
                self._set(job_id, rank=(target + prev) / 2 if prev is not None else target - 1)
        self.on_change()
        return self.service.get(job_id)

    def retry_failed(self) -> int:
        """Queue failed jobs again while they have retries left; the printer still needs its bed cleared."""
        failed = self.store.all(
            "SELECT j.* FROM jobs j JOIN job_requirements r ON r.job_id = j.id"
            " WHERE j.state = ? AND r.retries_left > 0", (JobState.FAILED.value,))
        for job in failed:
            with self.store.transaction() as db:
                db.execute("UPDATE job_requirements SET retries_left = retries_left - 1 WHERE job_id = ?",
                           (job["id"],))
                jobs.retry(db, job, job["error"])
        self.retried += len(failed)
        return len(failed)
