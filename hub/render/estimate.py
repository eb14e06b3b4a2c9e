"""Frame times a render job has measured: at full quality once frames arrive, scaled up from the preview before."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from .plan import work_scale


@dataclass(frozen=True)
class PreviewTiming:
    frame_s: float  # one frame at the job's own quality
    overhead_s: float  # per task: Blender starting, loading the scene, uploading


def preview_timing(db: Database, job: dict[str, Any]) -> PreviewTiming | None:
    row = db.execute(
        "SELECT AVG(t.render_s / t.frames_done), AVG(MAX(t.duration_s - t.render_s, 0)), MIN(t.samples),"
        " MIN(t.resolution_pct) FROM render_tasks t"
        " WHERE t.job_id = ? AND t.kind = 'preview' AND t.state = 'completed' AND t.frames_done > 0",
        (job["id"],),
    ).fetchone()
    if row[0] is None:
        return None
    scale = work_scale(job["samples"], job["resolution_pct"], row[2], row[3])
    return PreviewTiming(frame_s=row[0] * scale, overhead_s=row[1] or 0.0)


def measured_frame_s(db: Database, job_id: int) -> float | None:
    """Mean render time of the job's full-quality frames delivered so far."""
    row = db.execute("SELECT AVG(render_s) FROM render_outputs WHERE job_id = ? AND preview = 0"
                     " AND render_s IS NOT NULL", (job_id,)).fetchone()
    return row[0]
