"""The job a serial printer runs, streamed from a file or printed from its SD card, and what the hub hears of it.

The device decides what happens (a start, a pause, a halt); this keeps the
job's record and says so in events: started, progress (at most once every
PROGRESS_EVERY_S), paused, resumed, completed, failed. Progress comes from
the firmware's M73 when the file has it, else from the lines answered (or
the SD card's byte position).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog

from agent.serial.host import HostEngine
from agent.serial.sdcard import SdTracker
from protocol.messages import JobCompleted, JobFailed, JobPaused, JobProgress, JobResumed, JobStarted

from .base import Emitter

PROGRESS_EVERY_S = 1.0

log = structlog.get_logger("farmhand.agent.serial")


@dataclass(slots=True)
class _Job:
    id: str
    lines: int
    sd: bool
    started: float
    last_progress: float


class JobTracker:
    """One serial printer's job, if it runs one; the device tells it what happened, it tells the hub."""

    def __init__(self, device_id: str, emitter: Emitter, engine: HostEngine, sd: SdTracker) -> None:
        self._device = device_id
        self._emitter = emitter
        self._engine = engine
        self._sd = sd
        self._log = log.bind(device=device_id)
        self._job: _Job | None = None
        self.last_lines_done = 0
        """How far the last job got (lines answered), kept after the engine forgets it."""

    @property
    def id(self) -> str | None:
        return self._job.id if self._job else None

    @property
    def running(self) -> bool:
        return self._job is not None

    @property
    def on_sd(self) -> bool:
        """A job the printer reads from its own SD card (the host only watches)."""
        return self._job is not None and self._job.sd

    def progress(self) -> float | None:
        job = self._job
        if job is None:
            return None
        if job.sd:
            return self._sd.fraction or 0.0
        if self._engine.m73_percent is not None:
            return self._engine.m73_percent / 100.0
        return self._engine.lines_done / job.lines if job.lines else 0.0

    def begin(self, job_id: str, lines: int | None) -> None:
        """A job starts: streamed (``lines`` of them) or, with ``lines`` None, from the SD card."""
        now = time.monotonic()
        self._job = _Job(job_id, lines or 0, lines is None, now, now)
        self._emitter.event(JobStarted(device=self._device, job_id=job_id, lines_total=lines))
        self._log.info("job started", job_id=job_id, lines=lines, sd=lines is None)

    def paused(self, reason: str) -> None:
        assert self._job is not None
        self._emitter.event(JobPaused(device=self._device, job_id=self._job.id, reason=reason))
        self._log.info("job paused", job_id=self._job.id, reason=reason)

    def resumed(self) -> None:
        assert self._job is not None
        self._emitter.event(JobResumed(device=self._device, job_id=self._job.id))
        self._log.info("job resumed", job_id=self._job.id)

    def lines_answered(self) -> None:
        """The firmware answered job lines: report progress, if the last report is old enough."""
        job = self._job
        if job is None:
            return
        now = time.monotonic()
        if now - job.last_progress >= PROGRESS_EVERY_S:
            job.last_progress = now
            self._emitter.event(JobProgress(device=self._device, job_id=job.id, progress=self.progress() or 0.0,
                                            lines_done=self._engine.lines_done))

    def sd_progressed(self) -> None:
        """The SD card reported its position (M27)."""
        if self._job is not None:
            self._emitter.event(JobProgress(device=self._device, job_id=self._job.id, progress=self.progress() or 0.0))

    def completed(self) -> None:
        assert self._job is not None
        job, self._job = self._job, None
        self.last_lines_done = job.lines
        duration = round(time.monotonic() - job.started, 3)
        resends = self._engine.resends
        self._emitter.event(JobCompleted(device=self._device, job_id=job.id, duration_s=duration, lines=job.lines,
                                         resends=resends))
        self._log.info("job completed", job_id=job.id, lines=job.lines, duration_s=duration, resends=resends,
                       lines_per_s=round(job.lines / duration, 1) if duration else None)

    def failed(self, reason: str, *, cancelled: bool = False) -> None:
        """The job ends short of its end (if one runs): cancelled, or for ``reason``."""
        if self._job is None:
            return
        job, self._job = self._job, None
        self.last_lines_done = self._engine.lines_done
        self._emitter.event(JobFailed(device=self._device, job_id=job.id, reason=reason, cancelled=cancelled))
        self._log.warning("job ended", job_id=job.id, reason=reason, cancelled=cancelled,
                          lines_done=self._engine.lines_done)
