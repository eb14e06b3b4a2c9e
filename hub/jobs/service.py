"""The job service: create, list, get and cancel jobs — the one implementation behind
the HTTP API and script requests over MQTT — and the transitions the scheduler and
the agents' events share.

States: queued → assigned (start command sent, awaiting the agent's ack) →
printing ⇄ paused → completed | failed | cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlite_utils import Database

from protocol.messages import CancelJob

from hub.api.problems import HttpError
from hub.mqtt import CommandOutbox, Outgoing
from hub.store import Store, utcnow

from .schemas import ACTIVE_STATES, TERMINAL_STATES, Job, JobCreate, JobState

log = structlog.get_logger("farmhand.hub.jobs")


class JobError(HttpError):
    status = 400
    title = "Bad request"


class JobNotFound(JobError):
    status = 404
    title = "Job not found"


class JobConflict(JobError):
    status = 409
    title = "Job state conflict"


class InvalidJob(JobError):
    status = 422
    title = "Invalid job"


@dataclass(frozen=True)
class Cancelled:
    job: Job
    done: bool  # False: a cancel command is on its way to the device


def to_job(row: dict[str, Any]) -> Job:
    def ref(node: str | None, device: str | None) -> str | None:
        return f"{node}/{device}" if node and device else None

    return Job(
        id=row["id"],
        name=row["name"],
        state=row["state"],
        file_sha256=row["file_sha256"],
        device=ref(row["node"], row["device"]),
        pinned_device=ref(row["pin_node"], row["pin_device"]),
        priority=row["priority"],
        attempt=row["attempt"],
        progress=row["progress"],
        lines=row["lines"],
        lines_total=row["lines_total"],
        resends=row["resends"],
        extruded_mm=row["extruded_mm"],
        duration_s=row["duration_s"],
        error=row["error"],
        cancel_requested=row["cancel_requested_at"] is not None,
        created_at=row["created_at"],
        assigned_at=row["assigned_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def load(db: Database, job_id: int) -> dict[str, Any] | None:
    return next(db.query("SELECT * FROM jobs WHERE id = ?", (job_id,)), None)


def set_fields(db: Database, job_id: int, **fields: Any) -> None:
    assignments = ", ".join(f"{name} = ?" for name in fields)
    db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*fields.values(), job_id))


def finish(db: Database, outbox: CommandOutbox, job_id: int, state: JobState, at: str, **fields: Any) -> None:
    set_fields(db, job_id, state=state.value, finished_at=at, ack_deadline=None, **fields)
    outbox.supersede_job(db, job_id)
    log.info("job_finished", job_id=job_id, state=state.value, error=fields.get("error"))


def retry(db: Database, job: dict[str, Any], reason: str) -> None:
    """Queue an ended job (failed, interrupted) again; the printer it ran on needs its bed cleared first."""
    if job["node"] and job["started_at"]:
        db.execute("UPDATE device_profiles SET last_print_at = ? WHERE node = ? AND device = ?",
                   (job["finished_at"] or utcnow(), job["node"], job["device"]))
    set_fields(db, job["id"], state=JobState.QUEUED.value, node=None, device=None, command_id=None,
               ack_deadline=None, assigned_at=None, started_at=None, finished_at=None,
               progress=None, lines=None, extruded_mm=None, duration_s=None,
               attempt=job["attempt"] + 1, error=f"retrying after: {reason}")
    log.info("job_retried", job_id=job["id"], attempt=job["attempt"] + 1, reason=reason)


def back_to_queue(db: Database, outbox: CommandOutbox, job: dict[str, Any], reason: str) -> JobState:
    """The start did not take (rejected, failed or never acknowledged): try again elsewhere.

    A job whose cancellation was asked for while it waited is cancelled instead.
    """
    if job["command_id"]:
        outbox.supersede(db, job["command_id"])
    if job["cancel_requested_at"]:
        finish(db, outbox, job["id"], JobState.CANCELLED, utcnow(), error=reason)
        return JobState.CANCELLED
    set_fields(db, job["id"], state=JobState.QUEUED.value, node=None, device=None, command_id=None,
               ack_deadline=None, assigned_at=None, attempt=job["attempt"] + 1, error=reason)
    log.info("job_requeued", job_id=job["id"], attempt=job["attempt"] + 1, reason=reason)
    return JobState.QUEUED


class JobService:
    def __init__(self, store: Store, outbox: CommandOutbox, on_change: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.outbox = outbox
        self.on_change = on_change

    def create(self, spec: JobCreate, request_key: str | None = None) -> tuple[Job, bool]:
        """Queue a job; with a request_key seen before, return that first job (created=False)."""
        if request_key is not None:
            existing = self.store.one("SELECT * FROM jobs WHERE request_key = ?", (request_key,))
            if existing is not None:
                return to_job(existing), False
        file = self.store.one("SELECT name FROM files WHERE sha256 = ?", (spec.file_sha256,))
        if file is None:
            raise InvalidJob(f"no file with sha256 {spec.file_sha256}; upload it first (POST /api/v1/files)")
        pin_node = pin_device = None
        if spec.device is not None:
            pin_node, pin_device = spec.device.split("/", 1)
            device = self.store.one("SELECT render FROM devices WHERE node = ? AND id = ?", (pin_node, pin_device))
            if device is None:
                raise InvalidJob(f"unknown device {spec.device!r}; GET /api/v1/devices lists the known ones")
            if device["render"] is not None:
                raise InvalidJob(f"device {spec.device!r} is a render node; print jobs need a printer")
        with self.store.transaction() as db:
            job_id = db.execute(
                "INSERT INTO jobs (name, file_sha256, state, priority, pin_node, pin_device, request_key, created_at,"
                " requeue_interrupted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (spec.name or file["name"], spec.file_sha256, JobState.QUEUED.value, spec.priority,
                 pin_node, pin_device, request_key, utcnow(), spec.requeue_interrupted),
            ).lastrowid
        log.info("job_created", job_id=job_id, file_sha256=spec.file_sha256, device=spec.device)
        self.on_change()
        return self.get(job_id), True

    def get(self, job_id: int) -> Job:
        row = load(self.store.db, job_id)
        if row is None:
            raise JobNotFound(f"no job {job_id}")
        return to_job(row)

    def list(self, state: JobState | None = None) -> list[Job]:
        if state is None:
            rows = self.store.all("SELECT * FROM jobs ORDER BY id")
        else:
            rows = self.store.all("SELECT * FROM jobs WHERE state = ? ORDER BY id", (state.value,))
        return [to_job(r) for r in rows]

    def cancel(self, job_id: int) -> Cancelled:
        out: Outgoing | None = None
        with self.store.transaction() as db:
            job = load(db, job_id)
            if job is None:
                raise JobNotFound(f"no job {job_id}")
            state = JobState(job["state"])
            if state in TERMINAL_STATES:
                raise JobConflict(f"job {job_id} is already {state.value}")
            if state == JobState.QUEUED:
                finish(db, self.outbox, job_id, JobState.CANCELLED, utcnow())
            else:
                assert state in ACTIVE_STATES
                if job["cancel_requested_at"] is None:
                    set_fields(db, job_id, cancel_requested_at=utcnow())
                body = CancelJob(command_id=f"cancel-{job_id}", device=job["device"], job_id=str(job_id))
                out = self.outbox.record(db, job["node"], body, job_id)
        if out is not None:
            self.outbox.send(out)
            log.info("job_cancel_requested", job_id=job_id, device=f"{job['node']}/{job['device']}")
        return Cancelled(self.get(job_id), done=out is None)
