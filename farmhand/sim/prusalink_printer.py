"""What a simulated PrusaLink printer does, apart from HTTP: its files, its job and its state.

The states and the job's fields are the ones Prusa's OpenAPI for PrusaLink v1
(Prusa-Link-Web ``spec/openapi.yaml``) defines. Time is read from a clock when
someone asks, never ticked by a task, so a thousand idle simulated printers
cost nothing: a job's progress is the time it has spent printing over the
printing time the simulator was given (``print_s``), frozen while paused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .refused import Refused

AMBIENT_C = 23.0
HEAT_TAU_S = 0.5
"""How fast the simulated heaters approach their targets (first-order, this time constant)."""
NOZZLE_C = 215.0
BED_C = 60.0


@dataclass(slots=True)
class SimFile:
    size: int
    sha256: str
    m_timestamp: int


@dataclass(slots=True)
class SimJob:
    id: int
    storage: str
    path: str
    size: int
    print_s: float
    state: str = "PRINTING"
    elapsed_s: float = 0.0
    """Time printed before the current stretch (pauses excluded)."""
    running_since: float | None = None


@dataclass(slots=True)
class Heaters:
    target_nozzle: float = 0.0
    target_bed: float = 0.0
    changed_at: float = 0.0
    start_nozzle: float = AMBIENT_C
    start_bed: float = AMBIENT_C

    def temps(self, now: float) -> tuple[float, float]:
        k = math.exp(-(now - self.changed_at) / HEAT_TAU_S)
        nozzle = self.target_nozzle or AMBIENT_C
        bed = self.target_bed or AMBIENT_C
        return (round(nozzle + (self.start_nozzle - nozzle) * k, 1), round(bed + (self.start_bed - bed) * k, 1))

    def set(self, now: float, nozzle: float, bed: float) -> None:
        self.start_nozzle, self.start_bed = self.temps(now)
        self.target_nozzle, self.target_bed, self.changed_at = nozzle, bed, now


@dataclass
class SimPrinter:
    """One simulated printer's state. The HTTP side (``prusalink.py``) reads and commands it."""

    name: str = "prusa-sim"
    serial: str = "SIM00000000000001"
    username: str = "maker"
    password: str = "sim-password"
    api_key: str | None = None
    """Older builds' X-Api-Key; when set, a request may use it instead of the digest login."""
    print_s: float = 5.0
    """How long a job takes to print, in seconds: the simulated printer's speed."""
    progress_scale: Literal["percent", "fraction"] = "percent"
    """The spec says percent (0–100); some builds have reported a fraction (0–1)."""
    storage: str = "usb"
    """The storage uploads go to: ``usb`` on Buddy printers (MK4, XL, MINI), ``local`` on a Pi's PrusaLink."""
    firmware: str = "6.2.0+sim"
    nonce_ttl_s: float = 300.0
    status_etag: bool = False
    """Answer /api/v1/status with an ETag and 304 Not Modified (not in the spec; for clients that use it)."""
    clock: Callable[[], float] = time.monotonic
    files: dict[str, SimFile] = field(default_factory=dict)
    job: SimJob | None = None
    error: str | None = None
    attention: str | None = None
    auth_failures: int = 0
    """Requests refused for wrong credentials (a lockout on some firmwares counts these)."""
    challenges: int = 0
    """401 answers that carried a fresh challenge (no credentials, or a stale nonce)."""
    status_not_modified: int = 0
    """Status requests answered 304 (with ``status_etag``)."""
    _next_job_id: int = 1
    _heaters: Heaters = field(default_factory=Heaters)

    # ------------------------------------------------------------- reading

    def printer_state(self) -> str:
        self._advance()
        if self.error is not None:
            return "ERROR"
        if self.attention is not None:
            return "ATTENTION"
        if self.job is not None:
            return self.job.state if self.job.state != "ERROR" else "ERROR"
        return "IDLE"

    def status(self) -> dict[str, Any]:
        """``GET /api/v1/status``: printer telemetry, and the job while there is one."""
        now = self.clock()
        state = self.printer_state()
        nozzle, bed = self._heaters.temps(now)
        printer: dict[str, Any] = {
            "state": state, "temp_nozzle": nozzle, "target_nozzle": self._heaters.target_nozzle,
            "temp_bed": bed, "target_bed": self._heaters.target_bed, "axis_z": 0.2, "flow": 100, "speed": 100,
            "fan_hotend": 0, "fan_print": 0,
        }
        problem = self.error or self.attention
        printer["status_printer"] = {"ok": problem is None, "message": problem or "OK"}
        status: dict[str, Any] = {
            "printer": printer,
            "storage": {"name": self.storage.upper(), "path": f"/{self.storage}", "read_only": False},
        }
        job = self.job
        if job is not None:
            status["job"] = {"id": job.id, "progress": self._progress(job, now),
                             "time_remaining": round(max(0.0, job.print_s - self._printed(job, now))),
                             "time_printing": round(self._printed(job, now))}
        return status

    def job_info(self) -> dict[str, Any] | None:
        """``GET /api/v1/job``: the current (or just ended) job with its file, None for no job."""
        self._advance()
        job = self.job
        if job is None:
            return None
        now = self.clock()
        printed = self._printed(job, now)
        return {
            "id": job.id, "state": job.state, "progress": self._progress(job, now),
            "time_remaining": round(max(0.0, job.print_s - printed)), "time_printing": round(printed),
            "inaccurate_estimates": False,
            "file": {"name": _short_name(job.path), "display_name": job.path.rsplit("/", 1)[-1],
                     "path": f"/{job.storage}", "display_path": f"/{self.storage.upper()}",
                     "size": job.size, "m_timestamp": self.files[f"{job.storage}/{job.path}"].m_timestamp
                     if f"{job.storage}/{job.path}" in self.files else 0},
        }

    def busy(self) -> bool:
        state = self.printer_state()
        return state in ("PRINTING", "PAUSED", "ERROR", "ATTENTION", "BUSY")

    # ------------------------------------------------------------- files

    def store(self, storage: str, path: str, size: int, sha256: str, *, overwrite: bool) -> None:
        key = f"{storage}/{path}"
        if self.job is not None and self.job.state in ("PRINTING", "PAUSED") and \
                (self.job.storage, self.job.path) == (storage, path):
            raise Refused(409, "File is currently being printed")
        if key in self.files and not overwrite:
            raise Refused(409, "File already exists")
        self.files[key] = SimFile(size, sha256, int(time.time()))

    def check_upload(self, storage: str, path: str, *, overwrite: bool, print_after: bool) -> None:
        """What a printer refuses before it reads an upload's body."""
        if storage != self.storage:
            raise Refused(404, f"Storage {storage} not found")
        if f"{storage}/{path}" in self.files and not overwrite:
            raise Refused(409, "File already exists")
        if print_after and self.busy():
            raise Refused(409, "Printer is busy")

    def delete(self, storage: str, path: str) -> None:
        key = f"{storage}/{path}"
        if key not in self.files:
            raise Refused(404, "File not found")
        if self.job is not None and self.job.state in ("PRINTING", "PAUSED") and \
                (self.job.storage, self.job.path) == (storage, path):
            raise Refused(409, "File is currently being printed")
        del self.files[key]

    # ------------------------------------------------------------- commands

    def start(self, storage: str, path: str) -> None:
        key = f"{storage}/{path}"
        if key not in self.files:
            raise Refused(404, "File not found")
        if self.busy():
            raise Refused(409, "Printer is busy")
        now = self.clock()
        self.job = SimJob(self._next_job_id, storage, path, self.files[key].size, self.print_s, running_since=now)
        self._next_job_id += 1
        self._heaters.set(now, NOZZLE_C, BED_C)

    def pause(self, job_id: int) -> None:
        job = self._the_job(job_id)
        if job.state != "PRINTING" or self.attention is not None:
            raise Refused(409, f"Can't pause, the job is {job.state}")
        self._halt(job, "PAUSED")

    def resume(self, job_id: int) -> None:
        job = self._the_job(job_id)
        if job.state != "PAUSED" or self.attention is not None:
            raise Refused(409, f"Can't resume, the job is {job.state}")
        job.state, job.running_since = "PRINTING", self.clock()

    def stop(self, job_id: int) -> None:
        job = self._the_job(job_id)
        if job.state not in ("PRINTING", "PAUSED"):
            raise Refused(409, f"Can't stop, the job is {job.state}")
        self._halt(job, "STOPPED")
        self.attention = None
        self._heaters.set(self.clock(), 0.0, 0.0)

    # ------------------------------------------------------------- what goes wrong

    def raise_attention(self, message: str) -> None:
        """The printer needs a person (filament runout, a crash detected): a running job pauses."""
        self._advance()
        self.attention = message
        if self.job is not None and self.job.state == "PRINTING":
            self._halt(self.job, "PAUSED")

    def clear_attention(self) -> None:
        """The person dealt with it: a job the attention paused goes on."""
        self.attention = None
        if self.job is not None and self.job.state == "PAUSED":
            self.job.state, self.job.running_since = "PRINTING", self.clock()

    def fail(self, message: str) -> None:
        """A fatal error (thermal runaway, a heater fault): the job ends in ERROR, heaters off."""
        self._advance()
        self.error = message
        if self.job is not None and self.job.state in ("PRINTING", "PAUSED"):
            self._halt(self.job, "ERROR")
        self._heaters.set(self.clock(), 0.0, 0.0)

    def reset(self) -> None:
        """The error screen dismissed (a reset): idle again, the failed job forgotten."""
        self.error = self.attention = None
        self.job = None

    # ------------------------------------------------------------- inside

    def _the_job(self, job_id: int) -> SimJob:
        self._advance()
        if self.job is None or self.job.id != job_id:
            raise Refused(404, f"Job {job_id} not found")
        return self.job

    def _halt(self, job: SimJob, state: str) -> None:
        job.elapsed_s = self._printed(job, self.clock())
        job.running_since = None
        job.state = state

    def _printed(self, job: SimJob, now: float) -> float:
        running = now - job.running_since if job.running_since is not None else 0.0
        return min(job.print_s, job.elapsed_s + running)

    def _progress(self, job: SimJob, now: float) -> float:
        fraction = self._printed(job, now) / job.print_s if job.print_s > 0 else 1.0
        return round(fraction * 100, 2) if self.progress_scale == "percent" else round(fraction, 4)

    def _advance(self) -> None:
        job = self.job
        if job is not None and job.state == "PRINTING" and self._printed(job, self.clock()) >= job.print_s:
            self._halt(job, "FINISHED")
            self._heaters.set(self.clock(), 0.0, 0.0)


def _short_name(path: str) -> str:
    """A DOS 8.3 name, as Buddy firmware reports files on its USB stick."""
    base = path.rsplit("/", 1)[-1]
    stem, _, ext = base.rpartition(".")
    return f"{stem.replace('-', '')[:6].upper()}~1.{ext[:3].upper()}"
