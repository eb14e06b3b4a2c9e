"""Render jobs as the API sees them: submit (one or a batch), list, get, pause, resume, cancel.

Progress counts delivered full-quality frames; the ETA is the remaining frames
times the measured frame time (or the preview's estimate) over the nodes
working on the job, plus Blender's start-up for each task not yet started.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import structlog

from hub.config import RenderConfig
from hub.jobs import InvalidJob, JobConflict, JobNotFound
from hub.mqtt import CommandOutbox, Outgoing
from hub.store import Store, utcnow

from .estimate import measured_frame_s, preview_timing
from .schemas import (
    JOB_TERMINAL,
    PRESETS,
    RenderJob,
    RenderJobCreate,
    RenderJobState,
    RenderSubmission,
    RenderTask,
    TaskState,
)
from .tasks import ACTIVE, TaskBook, load_job, set_row

log = structlog.get_logger("farmhand.hub.render.jobs")

# A .blend starts "BLENDER"; one saved compressed is gzip (older) or zstd (3.0 and later).
_BLEND_MAGIC = (b"BLENDER", b"\x1f\x8b", b"\x28\xb5\x2f\xfd")
_TERMINAL = tuple(s.value for s in JOB_TERMINAL)


class RenderJobService:
    def __init__(self, store: Store, outbox: CommandOutbox, book: TaskBook, config: RenderConfig,
                 blend_path: Callable[[str], Any], on_change: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.outbox = outbox
        self.book = book
        self.config = config
        self.blend_path = blend_path
        self.on_change = on_change

    # ------------------------------------------------------------------ submit

    def create(self, spec: RenderJobCreate, request_key: str | None = None) -> tuple[RenderSubmission, bool]:
        if request_key is not None:
            rows = self.store.all("SELECT id, batch_id FROM render_jobs WHERE request_key = ? OR request_key LIKE ?"
                                  " ORDER BY id", (request_key, f"{request_key}#%"))
            if rows:
                return RenderSubmission(batch_id=rows[0]["batch_id"], jobs=[self.get(r["id"]) for r in rows]), False
        names = {sha: self._check_blend(sha) for sha in spec.files}
        shots = [(sha, cam) for sha in spec.files for cam in (spec.cameras or [None])]
        batch_id = uuid.uuid4().hex[:12] if len(shots) > 1 else None
        preset = PRESETS[spec.quality]
        ids = []
        with self.store.transaction() as db:
            for n, (sha, camera) in enumerate(shots):
                name = spec.name if spec.name and len(spec.files) == 1 else names[sha]
                key = request_key if request_key is None or n == 0 else f"{request_key}#{n}"
                job_id = db.execute(
                    "INSERT INTO render_jobs (batch_id, name, blend_sha256, frame_start, frame_end, engine,"
                    " cycles_device, quality, samples, resolution_pct, denoise, file_format, camera, priority, tags,"
                    " min_vram_mb, chunk_size, preview, max_attempts, max_node_failures, timeout_s, state,"
                    " request_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                    " ?, ?, ?, ?)",
                    (batch_id, f"{name} [{camera}]" if camera else name, sha,
                     spec.frame_start, spec.frame_end, spec.engine, spec.cycles_device, spec.quality,
                     spec.samples or preset.samples, spec.resolution_pct or preset.resolution_pct, int(preset.denoise),
                     spec.file_format, camera, spec.priority, json.dumps(sorted(set(spec.tags))), spec.min_vram_mb,
                     spec.chunk_size, int(spec.preview), spec.max_attempts or self.config.max_attempts,
                     spec.max_node_failures or self.config.max_node_failures,
                     spec.timeout_s or self.config.task_timeout_s, RenderJobState.QUEUED.value, key, utcnow()),
                ).lastrowid
                job = load_job(db, job_id)
                assert job is not None
                self.book.add_first_tasks(db, job)
                ids.append(job_id)
        log.info("render_jobs_created", ids=ids, batch_id=batch_id, frames=f"{spec.frame_start}-{spec.frame_end}",
                 quality=spec.quality)
        self.on_change()
        return RenderSubmission(batch_id=batch_id, jobs=[self.get(i) for i in ids]), True

    def _check_blend(self, sha: str) -> str:
        row = self.store.one("SELECT name FROM files WHERE sha256 = ?", (sha,))
        if row is None:
            raise InvalidJob(f"no file with sha256 {sha}; upload the .blend first (POST /api/v1/files)")
        with open(self.blend_path(sha), "rb") as fh:
            head = fh.read(8)
        if not head.startswith(_BLEND_MAGIC):
            raise InvalidJob(f"{row['name']} ({sha[:12]}…) is not a .blend file")
        return row["name"]

    # ------------------------------------------------------------------ read

    def get(self, job_id: int) -> RenderJob:
        job = load_job(self.store.db, job_id)
        if job is None:
            raise JobNotFound(f"no render job {job_id}")
        return self._view(job)

    def list(self, state: RenderJobState | None = None) -> list[RenderJob]:
        if state is None:
            rows = self.store.all("SELECT * FROM render_jobs ORDER BY id")
        else:
            rows = self.store.all("SELECT * FROM render_jobs WHERE state = ? ORDER BY id", (state.value,))
        return [self._view(r) for r in rows]

    def _view(self, job: dict[str, Any]) -> RenderJob:
        db = self.store.db
        tasks = self.store.all("SELECT * FROM render_tasks WHERE job_id = ? ORDER BY id", (job["id"],))
        total = job["frame_end"] - job["frame_start"] + 1
        done = db.execute("SELECT COUNT(*) FROM render_outputs WHERE job_id = ? AND preview = 0",
                          (job["id"],)).fetchone()[0]
        previews = [t for t in tasks if t["kind"] == "preview"]
        frame_s = measured_frame_s(db, job["id"])
        timing = preview_timing(db, job)
        if frame_s is None and timing is not None:
            frame_s = timing.frame_s
        eta = None
        if frame_s is not None and job["state"] not in _TERMINAL:
            working = max(1, sum(t["state"] in ACTIVE for t in tasks))
            waiting = sum(t["state"] == TaskState.QUEUED.value for t in tasks)
            startup = timing.overhead_s if timing else 0.0
            eta = round(((total - done) * frame_s + waiting * startup) / working, 1)
        return RenderJob(
            id=job["id"], batch_id=job["batch_id"], name=job["name"], state=job["state"],
            blend_sha256=job["blend_sha256"], frame_start=job["frame_start"], frame_end=job["frame_end"],
            engine=job["engine"], cycles_device=job["cycles_device"], quality=job["quality"], samples=job["samples"],
            resolution_pct=job["resolution_pct"], denoise=bool(job["denoise"]), camera=job["camera"],
            file_format=job["file_format"],
            priority=job["priority"], tags=json.loads(job["tags"]), min_vram_mb=job["min_vram_mb"],
            chunk_size=job["chunk_size"], preview=bool(job["preview"]),
            preview_done=bool(previews) and all(t["state"] == TaskState.COMPLETED.value for t in previews),
            frames_total=total, frames_done=done, progress=round(done / total, 4),
            mean_frame_s=round(frame_s, 3) if frame_s is not None else None, eta_s=eta, error=job["error"],
            cancel_requested=job["cancel_requested_at"] is not None, created_at=job["created_at"],
            started_at=job["started_at"], finished_at=job["finished_at"],
            tasks=[RenderTask(id=t["id"], kind=t["kind"], frame_start=t["frame_start"], frame_end=t["frame_end"],
                              state=t["state"], device=f"{t['node']}/{t['device']}" if t["node"] else None,
                              attempt=t["attempt"], frames_done=t["frames_done"], duration_s=t["duration_s"],
                              error=t["error"]) for t in tasks],
        )

    # ------------------------------------------------------------------ control

    def pause(self, job_id: int) -> RenderJob:
        """No new task starts; running tasks finish (Blender cannot pause mid-frame)."""
        with self.store.transaction() as db:
            job = self._live(db, job_id, "pause")
            if job["state"] != RenderJobState.PAUSED.value:
                set_row(db, "render_jobs", job_id, state=RenderJobState.PAUSED.value)
        log.info("render_job_paused", job_id=job_id)
        return self.get(job_id)

    def resume(self, job_id: int) -> RenderJob:
        with self.store.transaction() as db:
            job = self._live(db, job_id, "resume")
            if job["state"] == RenderJobState.PAUSED.value:
                state = RenderJobState.RENDERING if job["started_at"] else RenderJobState.QUEUED
                set_row(db, "render_jobs", job_id, state=state.value)
        log.info("render_job_resumed", job_id=job_id)
        self.on_change()
        return self.get(job_id)

    def cancel(self, job_id: int) -> tuple[RenderJob, bool]:
        """Returns the job and whether it is cancelled already (False: running tasks are being stopped)."""
        out: list[Outgoing] = []
        with self.store.transaction() as db:
            job = self._live(db, job_id, "cancel")
            if job["cancel_requested_at"] is None:
                set_row(db, "render_jobs", job_id, cancel_requested_at=utcnow())
            out = self.book.stop_tasks(db, job_id)
            self.book.settle(db, job_id)
        for o in out:
            self.outbox.send(o)
        log.info("render_job_cancel_requested", job_id=job_id, running_tasks=len(out))
        view = self.get(job_id)
        return view, view.state == RenderJobState.CANCELLED

    def _live(self, db: Any, job_id: int, action: str) -> dict[str, Any]:
        job = load_job(db, job_id)
        if job is None:
            raise JobNotFound(f"no render job {job_id}")
        if job["state"] in _TERMINAL:
            raise JobConflict(f"render job {job_id} is already {job['state']}: nothing to {action}")
        return job
