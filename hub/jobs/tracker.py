"""What the agents' events and command acknowledgements do to jobs.

Subscribed to the ingest, so it runs inside the transaction that stores the event, so an event
and its effect are committed together and a replayed event (already stored)
changes nothing. Returns the commands to publish once that transaction commits.

An event only moves a job that is active on the device that sent it: anything
else is *stray* (a replay from a device the job was taken away from) and is
logged and counted, never applied.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, NamedTuple

import structlog
from sqlite_utils import Database

from protocol.messages import (
    CancelJob,
    CommandAck,
    JobCompleted,
    JobFailed,
    JobPaused,
    JobProgress,
    JobResumed,
    JobStarted,
)

from hub.ids import ascii_int
from hub.mqtt import CommandOutbox, Effects, Received
from hub.store import timestamp, utcnow

from . import service as jobs
from .schemas import ACTIVE_STATES, JobState

log = structlog.get_logger("farmhand.hub.lifecycle")

JobEvent = JobStarted | JobProgress | JobPaused | JobResumed | JobCompleted | JobFailed
_ACTIVE = {s.value for s in ACTIVE_STATES}


def _listed(states: set[str]) -> str:
    """States as an SQL list, for ``state IN (...)``."""
    return ", ".join(repr(s) for s in sorted(states))


# A job event reads only these (once per event: a narrow row, not the whole job).
_EVENT_JOB = "SELECT id, state, node, device, started_at FROM jobs WHERE id = ?"
# Progress as _job_event applies it, on an active job of that device only; the device reporting on the
# job runs it, even if its acceptance is still on the way (assigned becomes printing).
_PROGRESS = (
    f"UPDATE jobs SET state = CASE state WHEN '{JobState.ASSIGNED.value}' THEN '{JobState.PRINTING.value}'"
    " ELSE state END, progress = ?, lines = ?, ack_deadline = NULL"
    f" WHERE id = ? AND node = ? AND device = ? AND state IN ({_listed(_ACTIVE)})"
)
# The same on a job already running there, the usual case: its state stays, so the statement leaves it out
# of SET (naming it rewrites both of the jobs' indexes on state and runs the state trigger: half the cost).
_PROGRESS_RUNNING = (
    "UPDATE jobs SET progress = ?, lines = ?, ack_deadline = NULL"
    f" WHERE id = ? AND node = ? AND device = ? AND state IN ({_listed(_ACTIVE - {JobState.ASSIGNED.value})})"
)


class _EventJob(NamedTuple):
    id: int
    state: str
    node: str | None
    device: str | None
    started_at: str | None


class PrintJobTracker:
    def __init__(self, outbox: CommandOutbox) -> None:
        self.outbox = outbox
        self.stray = 0
        self.unknown_commands = 0

    def apply(self, msg: Received[JobEvent | CommandAck]) -> Effects:
        """Ingest subscriber: runs inside the transaction that stored the event."""
        assert msg.db is not None and msg.node is not None
        db, node, body = msg.db, msg.node, msg.body
        effects = Effects()
        if isinstance(body, CommandAck):
            self._ack(db, node, body, effects)
        else:
            self._job_event(db, node, msg, body, effects)
        return effects

    # ------------------------------------------------------------------ acknowledgements

    def _ack(self, db: Database, node: str, ack: CommandAck, effects: Effects) -> None:
        cmd = next(db.query("SELECT * FROM commands WHERE command_id = ?", (ack.command_id,)), None)
        if cmd is None or cmd["node"] != node:
            self.unknown_commands += 1
            log.warning("ack_for_unknown_command", node=node, command_id=ack.command_id, status=ack.status)
            return
        self.outbox.acknowledge(db, ack.command_id, ack.status, ack.reason)
        job = jobs.load(db, cmd["job_id"]) if cmd["job_id"] is not None else None
        if job is None:
            return
        if cmd["type"] == "start_job":
            self._start_ack(db, cmd, job, ack, effects)
        elif cmd["type"] == "cancel_job":
            self._cancel_ack(db, cmd, job, ack, effects)

    def _start_ack(self, db: Database, cmd: dict[str, Any], job: dict[str, Any], ack: CommandAck,
                   effects: Effects) -> None:
        current = job["command_id"] == cmd["command_id"]
        same_device = (job["node"], job["device"]) == (cmd["node"], cmd["device"])
        if ack.status in ("rejected", "failed"):
            if current and job["state"] == JobState.ASSIGNED.value:
                jobs.back_to_queue(db, self.outbox, job,
                                   f"{cmd['node']}/{cmd['device']} {ack.status}: {ack.reason or 'no reason given'}")
                effects.reschedule = True
            return
        # accepted or done: the device is running this job.
        if current:
            if job["state"] == JobState.ASSIGNED.value:
                jobs.set_fields(db, job["id"], state=JobState.PRINTING.value, ack_deadline=None, error=None)
                log.info("job_accepted", job_id=job["id"], device=f"{cmd['node']}/{cmd['device']}")
            return
        adoptable = (job["state"] == JobState.QUEUED.value and not job["cancel_requested_at"]) or (
            job["state"] == JobState.ASSIGNED.value and same_device
        )
        if adoptable:
            # A late answer to an earlier start, and the job runs nowhere else: keep
            # this run rather than cancel it and print the part again.
            if job["command_id"]:
                self.outbox.supersede(db, job["command_id"])
            jobs.set_fields(db, job["id"], state=JobState.PRINTING.value, node=cmd["node"], device=cmd["device"],
                            command_id=cmd["command_id"], ack_deadline=None,
                            assigned_at=job["assigned_at"] or cmd["created_at"], error=None)
            log.info("job_adopted_late_start", job_id=job["id"], command_id=cmd["command_id"])
            return
        # The job was given to another device (or ended) meanwhile: stop this copy.
        # Not linked to the job, so the job's end does not silence this command.
        body = CancelJob(command_id=f"cancel-{cmd['command_id']}", device=cmd["device"], job_id=str(job["id"]))
        effects.commands.append(self.outbox.record(db, cmd["node"], body, None))
        log.warning("late_start_cancelled", job_id=job["id"], command_id=cmd["command_id"],
                    device=f"{cmd['node']}/{cmd['device']}", job_state=job["state"])

    def _cancel_ack(self, db: Database, cmd: dict[str, Any], job: dict[str, Any], ack: CommandAck,
                    effects: Effects) -> None:
        on_device = (job["node"], job["device"]) == (cmd["node"], cmd["device"]) and job["state"] in _ACTIVE
        if not on_device:
            return
        if ack.status == "done" or (ack.status in ("rejected", "failed") and job["state"] == JobState.ASSIGNED.value):
            # Done, or the device never started it: either way it is not running.
            jobs.finish(db, self.outbox, job["id"], JobState.CANCELLED, utcnow())
            effects.reschedule = True
        elif ack.status in ("rejected", "failed") and not _device_runs(db, job):
            # The device runs no such job (its agent restarted, say): whatever it was, it is not running.
            jobs.finish(db, self.outbox, job["id"], JobState.CANCELLED, utcnow(),
                        error=f"cancelled; the device said: {ack.reason}")
            effects.reschedule = True
        elif ack.status in ("rejected", "failed"):
            jobs.set_fields(db, job["id"], error=f"cancel {ack.status} by the device: {ack.reason}")

    # ------------------------------------------------------------------ job events

    def _job_event(self, db: Database, node: str, msg: Received[Any], body: JobEvent, effects: Effects) -> None:
        if isinstance(body, JobProgress):
            self._progress(db, node, body)
            return
        job = self._active_job(db, node, body)
        if job is None:
            return
        job_id = job.id
        running = JobState.PRINTING.value
        # The device reporting on the job runs it, even if its acceptance is still on the way.
        current = running if job.state == JobState.ASSIGNED.value else job.state
        match body:
            case JobStarted():
                jobs.set_fields(db, job_id, state=current, started_at=job.started_at or msg.at,
                                lines_total=body.lines_total, ack_deadline=None)
            case JobPaused():
                jobs.set_fields(db, job_id, state=JobState.PAUSED.value)
            case JobResumed():
                jobs.set_fields(db, job_id, state=running)
            case JobCompleted():
                started = job.started_at or timestamp(msg.ts - timedelta(seconds=body.duration_s))
                jobs.finish(db, self.outbox, job_id, JobState.COMPLETED, msg.at, progress=1.0, lines=body.lines,
                            resends=body.resends, duration_s=body.duration_s, extruded_mm=body.extruded_mm,
                            started_at=started)
                effects.reschedule = True
            case JobFailed():
                state = JobState.CANCELLED if body.cancelled else JobState.FAILED
                jobs.finish(db, self.outbox, job_id, state, msg.at, error=body.reason)
                effects.reschedule = True

    def _progress(self, db: Database, node: str, body: JobProgress) -> None:
        """The most frequent event, in one statement: it moves the job only if the job is active on that
        device (what ``_active_job`` checks); one that moved nothing is stray, and counted as such there."""
        job_id = ascii_int(body.job_id)
        if job_id is None:
            moved = False
        else:
            args = (body.progress, body.lines_done, job_id, node, body.device)
            moved = db.conn.execute(_PROGRESS_RUNNING, args).rowcount > 0 \
                or db.conn.execute(_PROGRESS, args).rowcount > 0  # assigned (or stray: moves nothing either)
        if not moved:
            self._active_job(db, node, body)

    def _active_job(self, db: Database, node: str, body: JobEvent) -> _EventJob | None:
        job_id = ascii_int(body.job_id)
        row = None if job_id is None else db.conn.execute(_EVENT_JOB, (job_id,)).fetchone()
        job = _EventJob(*row) if row is not None else None
        if job is None or job.state not in _ACTIVE or (job.node, job.device) != (node, body.device):
            self.stray += 1
            log.warning("stray_job_event", node=node, device=body.device, job_id=body.job_id, event_type=body.type,
                        job_state=job.state if job else None,
                        job_device=f"{job.node}/{job.device}" if job else None)
            return None
        return job


def _device_runs(db: Database, job: dict[str, Any]) -> bool:
    """Whether the device's last status names this job, or says it prints one it cannot name."""
    row = db.execute("SELECT state, job_id FROM devices WHERE node = ? AND id = ?",
                     (job["node"], job["device"])).fetchone()
    if row is None:
        return False
    state, job_id = row
    return job_id == str(job["id"]) or (job_id is None and state in ("printing", "paused"))
