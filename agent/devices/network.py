"""What every networked printer driver shares (OctoPrint, Moonraker, PrusaLink, Bambu LAN).

A driver speaks its printer's API; this module owns the rest, so that all four
behave alike where a farm notices:

- **The link.** ``open()`` runs the driver's ``session()`` in a loop. A lost or
  refused connection is retried with exponential backoff and full jitter, so 50
  powered-off printers spread their attempts and never stall the loop or the
  printers that print. Silence longer than ``offline_after_s`` counts as a lost
  link. Bad credentials are one clear error on the device and a slow retry, not
  a storm of attempts.
- **The state.** A driver hands over what the printer reports as a
  ``PrinterReport`` (a full snapshot: drivers that receive deltas merge them
  first). Every report converges the device's status; a status is published
  when something the hub keeps changes, telemetry at most once a poll interval.
- **The job.** A job is uploaded under a name that carries its id
  (``job_file_name``), so the job can be recognised in any report — after a
  reconnect, or after the agent itself restarted mid-print — and is never
  started twice. The job's events (started, progress, paused, resumed,
  completed, failed) follow the printer's reports, not our commands.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, ClassVar

import structlog

from protocol.messages import (
    DeviceInfo,
    DeviceState,
    DeviceStatus,
    Heater,
    JobCompleted,
    JobFailed,
    JobPaused,
    JobProgress,
    JobResumed,
    JobStarted,
    LoadedMaterial,
    Telemetry,
)
from protocol.mqtt import backoff_delay

from .base import CommandRejected, Device, Emitter
from .telemetry_cap import TelemetryCap

log = structlog.get_logger("farmhand.agent.network")

PROGRESS_EVERY_S = 1.0
TELEMETRY_EVERY = 0.9
"""Telemetry goes out at most once per this much of the poll interval (``TelemetryCap``). A printer that
reports once an interval reports a hair early as often as late (timers, the network)."""
START_GRACE_S = 30.0
"""How long after a start a printer may go on reporting no job before the job counts as lost."""


class AuthFailed(Exception):
    """The printer refused our credentials; retrying at speed would not help (and may lock us out)."""


class LinkLost(Exception):
    """The connection to the printer failed or went silent; the text says how."""


class JobPhase(StrEnum):
    PRINTING = "printing"
    PAUSED = "paused"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PrinterReport:
    """What a printer says it is doing now: a full snapshot, whatever its API sent."""

    state: DeviceState
    temperatures: dict[str, Heater] = field(default_factory=dict)
    job_file: str | None = None
    """The file the printer prints or last printed, as stored on the printer."""
    job_phase: JobPhase | None = None
    progress: float | None = None
    """0..1, already converted from whatever scale the printer uses."""
    remaining_s: float | None = None
    error: str | None = None
    """The printer's own words for an error, a pause reason or a failed job."""
    materials: tuple[LoadedMaterial, ...] = ()
    firmware: str | None = None


class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniformly in [first/2, min(cap, first·2ⁿ)]."""

    def __init__(self, first_s: float = 1.0, max_s: float = 60.0, rng: Callable[[], float] = random.random) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self._rng = rng
        self._attempt = 0

    def next(self) -> float:
        delay = backoff_delay(self._attempt, self.first_s, self.max_s, self._rng)
        self._attempt = min(self._attempt + 1, 32)
        return delay

    def reset(self) -> None:
        self._attempt = 0


_SUFFIX_BY_MAGIC = ((b"PK\x03\x04", ".3mf"), (b"GCDE", ".bgcode"))
_JOB_NAME = re.compile(r"farmhand-job-([A-Za-z0-9_-]+)\.(?:gcode|bgcode|3mf|gcode\.3mf)$", re.IGNORECASE)


def job_file_name(job_id: str, path: Path) -> str:
    """The name a job's file is stored under on the printer: it carries the job id, so any report names the job."""
    with path.open("rb") as f:
        head = f.read(4)
    suffix = next((s for magic, s in _SUFFIX_BY_MAGIC if head.startswith(magic)), ".gcode")
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", job_id)
    return f"farmhand-job-{safe}{suffix}"


def job_id_in(name: str | None) -> str | None:
    """The job id a stored file's name carries (any folder in front is ignored), or None for a file not ours."""
    if not name:
        return None
    match = _JOB_NAME.search(name.rsplit("/", 1)[-1])
    return match.group(1) if match else None


HASH_CHUNK = 64 * 1024
"""Bytes read at a time to hash a job file. Hashing runs on the default executor's threads, and glibc keeps in
each thread's arena the largest block freed there once large blocks were seen: 1 MiB reads of a 30 MB file left
15 MB with six threads, hashlib.file_digest's 256 KiB buffer 3 MB, these 1.3 MB."""


def digest_of(file: BinaryIO, algorithm: str) -> str:
    """The hex digest (``hashlib.new``'s ``algorithm``) of what ``file`` holds from where it stands."""
    digest = hashlib.new(algorithm)
    for chunk in iter(lambda: file.read(HASH_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return digest_of(f, "sha256")


@dataclass(slots=True)
class _Job:
    id: str
    name: str
    started: float
    uploading: bool = True
    paused: bool = False
    last_progress: float = 0.0


class NetworkPrinter(Device):
    """A printer driven over its own API. A driver implements the printer's side; this runs the rest."""

    kind: ClassVar[str]
    """``DeviceInfo.kind`` of the driver."""

    def __init__(self, device_id: str, emitter: Emitter, *, model: str | None = None, poll_interval_s: float = 2.0,
                 offline_after_s: float | None = None, backoff: Backoff | None = None) -> None:
        super().__init__(device_id, emitter)
        self.model = model
        self.poll_interval_s = poll_interval_s
        self.offline_after_s = offline_after_s or max(10.0, 5 * poll_interval_s)
        self.backoff = backoff or Backoff()
        self.report: PrinterReport | None = None
        self.connected = False
        self._link_error: str | None = None
        self._auth_refused = False
        self._job: _Job | None = None
        self._heard = 0.0
        self._telemetry = TelemetryCap(emitter.telemetry, TELEMETRY_EVERY * poll_interval_s)
        self._published: tuple[object, ...] | None = None
        self._task: asyncio.Task[None] | None = None
        self.log = log.bind(device=device_id, driver=self.kind)

    # ---------------------------------------------------------------- the driver's side

    @abstractmethod
    async def session(self) -> None:
        """Connect and log in, then hand every report to ``heard()`` until the link fails.

        Must report a full snapshot soon after connecting (converging whatever changed
        while the link was down); raises ``AuthFailed`` for refused credentials and
        anything else for a failed or lost link. Call ``alive()`` on traffic that is
        not a report (a pong) so a quiet printer is not taken for a lost one.
        """

    async def disconnect(self) -> None:
        """Release the connection's resources (sessions, sockets); called when the session ends."""

    @abstractmethod
    async def upload(self, path: Path, name: str) -> str:
        """Store the job file on the printer, verified (hash or size); returns the name to start it by."""

    @abstractmethod
    async def start_print(self, name: str) -> None: ...

    @abstractmethod
    async def pause_print(self) -> None: ...

    @abstractmethod
    async def resume_print(self) -> None: ...

    @abstractmethod
    async def cancel_print(self) -> None: ...

    @abstractmethod
    async def stop_now(self) -> None:
        """Emergency stop: halt the machine at once (M112 or the API's own)."""

    # ---------------------------------------------------------------- Device

    def info(self) -> DeviceInfo:
        firmware = self.report.firmware if self.report else None
        return DeviceInfo(id=self.id, kind=self.kind, model=self.model, firmware=firmware)  # type: ignore[arg-type]

    def status(self) -> DeviceStatus:
        report = self.report
        job = self._job
        if self._link_error is not None and not self.connected:
            state, error = (DeviceState.ERROR, self._link_error) if self._auth_refused else \
                (DeviceState.DISCONNECTED, None)
        elif not self.connected or report is None:
            state, error = DeviceState.DISCONNECTED, None
        else:
            state, error = report.state, report.error if report.state is DeviceState.ERROR else None
        live = self.connected and report is not None
        return DeviceStatus(
            device=self.id, state=state, job_id=job.id if job and not job.uploading else None,
            progress=_fraction(report.progress) if live and job and report else None,
            remaining_s=report.remaining_s if live and job and report else None,
            temperatures=dict(report.temperatures) if live and report else {},
            materials=list(report.materials) if live and report else [], error=error,
        )

    async def open(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.kind}:{self.id}")

    async def close(self) -> None:
        self._telemetry.cancel()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # whoever closes us was cancelled too: never swallow that
            self._task = None

    async def start_job(self, job_id: str, path: Path) -> None:
        job = self._job
        if job is not None and job.id == job_id:
            self.log.info("job already on the printer", job_id=job_id)
            return
        report = self._ready("start a job")
        if job is not None or report.state is not DeviceState.IDLE:
            busy = f"job {job.id}" if job else report.state.value
            raise CommandRejected(f"device {self.id} is busy ({busy})")
        name = job_file_name(job_id, path)
        job = self._job = _Job(job_id, name, time.monotonic())
        try:
            stored = await self.upload(path, name)
            if self._job is not job:  # cancelled while it uploaded: the printer never hears of it
                raise CommandRejected(f"device {self.id}: job {job_id} was cancelled before it started")
            job.name = stored
            await self.start_print(stored)
            if self._job is not job:  # cancelled while the printer was starting it: stop it there
                await self.cancel_print()
                raise CommandRejected(f"device {self.id}: job {job_id} was cancelled as it started")
        except CommandRejected:
            self._job = None if self._job is job else self._job
            raise
        except Exception as exc:
            self._job = None if self._job is job else self._job
            raise CommandRejected(f"device {self.id} could not start the job: {exc}") from exc
        job.uploading = False
        job.started = time.monotonic()
        self.emitter.event(JobStarted(device=self.id, job_id=job_id))
        self.log.info("job started", job_id=job_id, file=stored)
        self._publish_if_changed()

    async def pause(self) -> None:
        self._require_job("pause", DeviceState.PRINTING)
        await self.pause_print()

    async def resume(self) -> None:
        self._require_job("resume", DeviceState.PAUSED)
        await self.resume_print()

    async def cancel(self) -> None:
        job = self._job
        if job is None:
            raise CommandRejected(f"device {self.id} is not running a job")
        if job.uploading:
            # Not on the printer yet: start_job stops before the printer starts it, or stops it there.
            self._end_job(JobFailed(device=self.id, job_id=job.id, reason="cancelled", cancelled=True))
            return
        report = self.report
        if self.connected and report is not None and self._heard > job.started and not job.uploading \
                and report.state in (DeviceState.IDLE, DeviceState.ERROR) \
                and report.job_phase not in (JobPhase.PRINTING, JobPhase.PAUSED):
            # The printer, in a report newer than the start, has no job to cancel: the job is over.
            self._end_job(JobFailed(device=self.id, job_id=job.id, reason="cancelled", cancelled=True))
            return
        self._ready("cancel")
        await self.cancel_print()

    async def emergency_stop(self) -> None:
        self._ready("stop")
        await self.stop_now()

    # ---------------------------------------------------------------- reports

    def heard(self, report: PrinterReport) -> None:
        """The printer's current state; call on every report (full snapshot)."""
        now = time.monotonic()
        self._heard = now
        if not self.connected:
            self.connected = True
            self._link_error = None
            self._auth_refused = False
            self.backoff.reset()
            self.log.info("printer connected", state=report.state.value)
        self.report = report
        self._follow_job(report, now)
        self._publish_if_changed()
        self._telemetry.offer(Telemetry(
            device=self.id, temperatures=dict(report.temperatures),
            progress=_fraction(report.progress) if self._job else None,
            remaining_s=report.remaining_s if self._job else None), now)

    def alive(self) -> None:
        """Traffic that is not a report: the link is up, the printer just had nothing new to say."""
        self._heard = time.monotonic()

    def _follow_job(self, report: PrinterReport, now: float) -> None:
        job = self._job
        if job is None:
            recovered = job_id_in(report.job_file)
            if recovered is None or report.job_phase not in (JobPhase.PRINTING, JobPhase.PAUSED):
                return
            # The agent restarted mid-print: the file's name says which job this is.
            job = self._job = _Job(recovered, report.job_file or "", now, uploading=False,
                                   paused=report.job_phase is JobPhase.PAUSED)
            self.log.info("job found running on the printer", job_id=recovered, file=report.job_file)
        if job.uploading:
            return
        if not _same_file(report.job_file, job.name):
            if now - job.started > START_GRACE_S and report.state in (DeviceState.IDLE, DeviceState.ERROR):
                reason = report.error or f"the printer no longer reports the job (it prints {report.job_file or 'nothing'})"
                self._end_job(JobFailed(device=self.id, job_id=job.id, reason=reason))
            return
        match report.job_phase:
            case JobPhase.PRINTING:
                if job.paused:
                    job.paused = False
                    self.emitter.event(JobResumed(device=self.id, job_id=job.id))
                if report.progress is not None and now - job.last_progress >= PROGRESS_EVERY_S:
                    job.last_progress = now
                    self.emitter.event(JobProgress(device=self.id, job_id=job.id, progress=_fraction(report.progress)))
            case JobPhase.PAUSED if not job.paused:
                job.paused = True
                self.emitter.event(JobPaused(device=self.id, job_id=job.id, reason=report.error or ""))
            case JobPhase.FINISHED:
                self._end_job(JobCompleted(device=self.id, job_id=job.id, duration_s=round(now - job.started, 3),
                                           lines=0))
            case JobPhase.CANCELLED:
                self._end_job(JobFailed(device=self.id, job_id=job.id, reason=report.error or "cancelled",
                                        cancelled=True))
            case JobPhase.FAILED:
                self._end_job(JobFailed(device=self.id, job_id=job.id,
                                        reason=report.error or "the printer stopped the job"))
            case _:
                pass

    def _end_job(self, event: JobCompleted | JobFailed) -> None:
        self._job = None
        self.emitter.event(event)
        self.log.info("job ended", job_id=event.job_id, outcome=event.type,
                      reason=getattr(event, "reason", None))
        self._publish_if_changed()

    def _publish_if_changed(self) -> None:
        status = self.status()
        # Progress and temperatures travel as telemetry; the retained status follows what the hub keeps.
        key = (status.state, status.job_id, status.error, tuple(status.materials))
        if key != self._published:
            self._published = key
            self.emitter.status(status)

    # ---------------------------------------------------------------- the link

    async def _run(self) -> None:
        while True:
            try:
                await self._session_watched()
                raise LinkLost("the printer closed the connection")
            except asyncio.CancelledError:
                raise
            except AuthFailed as exc:
                delay = self.backoff.max_s
                self._lost(f"login refused: {exc}", auth=True)
            except Exception as exc:  # one printer's failure must never end the driver
                delay = self.backoff.next()
                self._lost(str(exc) or type(exc).__name__, auth=False)
            finally:
                try:
                    await self.disconnect()
                except Exception:
                    self.log.exception("disconnect failed")
            await asyncio.sleep(delay)

    async def _session_watched(self) -> None:
        self._heard = time.monotonic()
        session = asyncio.create_task(self.session(), name=f"{self.kind}-session:{self.id}")
        try:
            while not session.done():
                silent = time.monotonic() - self._heard
                if silent > self.offline_after_s:
                    raise LinkLost(f"no report for {silent:.0f} s")
                await asyncio.wait({session}, timeout=min(1.0, self.offline_after_s - silent + 0.05))
            session.result()
        finally:
            if not session.done():
                session.cancel()
                try:
                    await session
                except (asyncio.CancelledError, Exception):
                    pass

    def _lost(self, reason: str, *, auth: bool) -> None:
        was = (self.connected, self._link_error)
        self.connected = False
        self._telemetry.cancel()
        self._link_error = reason
        self._auth_refused = auth
        if was != (False, reason):
            # Logged once per change: a printer that stays off does not fill the log.
            (self.log.error if auth else self.log.warning)("printer link down", reason=reason)
        self._publish_if_changed()

    # ---------------------------------------------------------------- guards

    def _ready(self, what: str) -> PrinterReport:
        if not self.connected or self.report is None:
            reason = f": {self._link_error}" if self._link_error else ""
            raise CommandRejected(f"device {self.id} cannot {what}: not connected{reason}")
        return self.report

    def _require_job(self, what: str, state: DeviceState) -> None:
        report = self._ready(what)
        if self._job is None or report.state is not state:
            raise CommandRejected(f"device {self.id} cannot {what}: it is {report.state.value}"
                                  + ("" if self._job else " with no job of ours"))


def _fraction(value: float | None) -> float | None:
    return None if value is None else min(1.0, max(0.0, value))


def _same_file(reported: str | None, ours: str) -> bool:
    if not reported:
        return False
    return reported.rsplit("/", 1)[-1].lower() == ours.rsplit("/", 1)[-1].lower()
