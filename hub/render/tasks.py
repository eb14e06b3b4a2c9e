"""The render task state machine, shared by the API, the dispatcher and the agents' events.

Every function runs inside the caller's transaction and returns the commands
to publish once it commits. A task's id on the wire carries its attempt
(``render-<task>.<attempt>``), so an event or upload from an attempt the hub
has given up on is told apart from the current one.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

import structlog
from sqlite_utils import Database

from protocol.messages import CancelJob, RenderCapabilities

from hub.config import RenderConfig
from hub.mqtt import CommandOutbox, Outgoing
from hub.store import utcnow

from . import plan
from .estimate import preview_timing
from .schemas import ACTIVE_TASK_STATES, JOB_TERMINAL, PRESETS, RenderJobState, TaskState

log = structlog.get_logger("farmhand.hub.render")

_WIRE = re.compile(r"^render-(\d+)\.(\d+)$")
ACTIVE = tuple(s.value for s in ACTIVE_TASK_STATES)
_TERMINAL_JOB = tuple(s.value for s in JOB_TERMINAL)


def wire_id(task: dict[str, Any]) -> str:
    return f"render-{task['id']}.{task['attempt']}"


def parse_wire(task_id: str) -> tuple[int, int] | None:
    m = _WIRE.match(task_id)
    return (int(m[1]), int(m[2])) if m else None


def load_job(db: Database, job_id: int) -> dict[str, Any] | None:
    return next(db.query("SELECT * FROM render_jobs WHERE id = ?", (job_id,)), None)


def load_task(db: Database, task_id: int) -> dict[str, Any] | None:
    return next(db.query("SELECT * FROM render_tasks WHERE id = ?", (task_id,)), None)


def set_row(db: Database, table: str, row_id: int, **fields: Any) -> None:
    assignments = ", ".join(f"{name} = ?" for name in fields)
    db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", (*fields.values(), row_id))


def render_devices(db: Database, *, idle_only: bool) -> list[dict[str, Any]]:
    """Online render nodes' devices (declared by ``DeviceInfo.render``), with parsed capabilities."""
    sql = ("SELECT d.node, d.id, d.render, d.capabilities FROM devices d JOIN nodes n ON n.id = d.node"
           " WHERE n.online = 1 AND d.listed = 1 AND d.render IS NOT NULL")
    if idle_only:
        sql += (f" AND d.state = 'idle' AND NOT EXISTS (SELECT 1 FROM render_tasks t WHERE t.node = d.node"
                f" AND t.device = d.id AND t.state IN ({', '.join('?' * len(ACTIVE))}))")
    rows = db.execute(sql + " ORDER BY d.updated_at, d.node, d.id", ACTIVE if idle_only else ()).fetchall()
    return [{"node": node, "id": dev, "render": RenderCapabilities.model_validate_json(render),
             "capabilities": json.loads(caps)} for node, dev, render, caps in rows]


class TaskBook:
    def __init__(self, outbox: CommandOutbox, config: RenderConfig) -> None:
        self.outbox = outbox
        self.config = config

    # ------------------------------------------------------------------ creating tasks

    def add_first_tasks(self, db: Database, job: dict[str, Any]) -> None:
        if job["preview"]:
            preset = PRESETS["preview"]
            for frame in plan.preview_frames(job["frame_start"], job["frame_end"]):
                self._add(db, job["id"], "preview", frame, frame, preset.samples, preset.resolution_pct)
        else:
            self._add_frame_tasks(db, job, job["chunk_size"] or self.config.default_chunk)

    def _add(self, db: Database, job_id: int, kind: str, start: int, end: int, samples: int, res: int) -> None:
        db.execute("INSERT INTO render_tasks (job_id, kind, frame_start, frame_end, samples, resolution_pct, state)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?)", (job_id, kind, start, end, samples, res, TaskState.QUEUED.value))

    def _add_frame_tasks(self, db: Database, job: dict[str, Any], size: int) -> None:
        for start, end in plan.chunks(job["frame_start"], job["frame_end"], size):
            self._add(db, job["id"], "frames", start, end, job["samples"], job["resolution_pct"])
        log.info("render_tasks_planned", job_id=job["id"], chunk_size=size,
                 tasks=math.ceil((job["frame_end"] - job["frame_start"] + 1) / size))

    def _chunk_after_preview(self, db: Database, job: dict[str, Any]) -> int:
        if job["chunk_size"]:
            return job["chunk_size"]
        timing = preview_timing(db, job)
        if timing is None:
            return self.config.default_chunk
        nodes = sum(plan.refusal(job, d["render"], d["capabilities"]) is None
                    for d in render_devices(db, idle_only=False))
        frames = job["frame_end"] - job["frame_start"] + 1
        return plan.derive_chunk(timing.frame_s, frames, nodes, self.config.target_task_s)

    # ------------------------------------------------------------------ task outcomes

    def completed(self, db: Database, task: dict[str, Any], at: str, duration_s: float) -> None:
        set_row(db, "render_tasks", task["id"], state=TaskState.COMPLETED.value, duration_s=duration_s,
                finished_at=at, ack_deadline=None)
        if task["command_id"]:
            self.outbox.supersede(db, task["command_id"])
        job = load_job(db, task["job_id"])
        assert job is not None
        if task["kind"] == "preview" and job["state"] not in _TERMINAL_JOB and not self._left(db, job["id"]):
            self._add_frame_tasks(db, job, self._chunk_after_preview(db, job))
        self.settle(db, job["id"])

    def _left(self, db: Database, job_id: int) -> int:
        return db.execute("SELECT COUNT(*) FROM render_tasks WHERE job_id = ? AND state != ?",
                          (job_id, TaskState.COMPLETED.value)).fetchone()[0]

    def attempt_failed(self, db: Database, task: dict[str, Any], reason: str, *, counts: bool,
                       duration_s: float | None = None) -> list[Outgoing]:
        """An attempt ended without its frames. ``counts``: the node is to blame (it counts towards
        the task's attempts and the node's failures); a node going offline is not."""
        if duration_s is None and task["assigned_at"]:
            duration_s = max(0.0, (datetime.fromisoformat(utcnow()) - datetime.fromisoformat(task["assigned_at"]))
                             .total_seconds())
        db.execute("INSERT INTO render_failures (task_id, job_id, attempt, node, device, reason, counts, duration_s,"
                   " at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (task["id"], task["job_id"], task["attempt"], task["node"], task["device"], reason, int(counts),
                    duration_s, utcnow()))
        if task["command_id"]:
            self.outbox.supersede(db, task["command_id"])
        job = load_job(db, task["job_id"])
        assert job is not None
        if job["cancel_requested_at"] or job["state"] in _TERMINAL_JOB:
            set_row(db, "render_tasks", task["id"], state=TaskState.CANCELLED.value, error=reason,
                    finished_at=utcnow(), ack_deadline=None)
            self.settle(db, job["id"])
            return []
        tries = db.execute("SELECT COUNT(*) FROM render_failures WHERE task_id = ? AND counts = 1",
                           (task["id"],)).fetchone()[0]
        if tries >= job["max_attempts"]:
            set_row(db, "render_tasks", task["id"], state=TaskState.FAILED.value, error=reason,
                    finished_at=utcnow(), ack_deadline=None)
            log.warning("render_task_gave_up", task_id=task["id"], job_id=job["id"], tries=tries, reason=reason)
            return self.fail_job(db, job, f"task {task['id']} (frames {task['frame_start']}-{task['frame_end']}) "
                                          f"failed {tries} times; last: {reason}")
        set_row(db, "render_tasks", task["id"], state=TaskState.QUEUED.value, node=None, device=None,
                command_id=None, ack_deadline=None, assigned_at=None, attempt=task["attempt"] + 1,
                frames_done=0, render_s=0, error=reason)
        log.info("render_task_requeued", task_id=task["id"], job_id=job["id"], attempt=task["attempt"] + 1,
                 reason=reason, counts=counts)
        return []

    # ------------------------------------------------------------------ whole jobs

    def fail_job(self, db: Database, job: dict[str, Any], reason: str) -> list[Outgoing]:
        set_row(db, "render_jobs", job["id"], state=RenderJobState.FAILED.value, error=reason, finished_at=utcnow())
        log.warning("render_job_failed", job_id=job["id"], reason=reason)
        return self.stop_tasks(db, job["id"])

    def stop_tasks(self, db: Database, job_id: int) -> list[Outgoing]:
        """Queued tasks are dropped; running ones are told to stop (and end when their node confirms)."""
        db.execute("UPDATE render_tasks SET state = ?, finished_at = ? WHERE job_id = ? AND state = ?",
                   (TaskState.CANCELLED.value, utcnow(), job_id, TaskState.QUEUED.value))
        out = []
        for task in db.query(f"SELECT * FROM render_tasks WHERE job_id = ? AND state IN ({', '.join('?' * len(ACTIVE))})",
                             (job_id, *ACTIVE)):
            out.append(self.cancel_command(db, task))
        return out

    def cancel_command(self, db: Database, task: dict[str, Any]) -> Outgoing:
        body = CancelJob(command_id=f"cancel-render-{task['id']}-{task['attempt']}", device=task["device"],
                         job_id=wire_id(task))
        return self.outbox.record(db, task["node"], body, None)

    def settle(self, db: Database, job_id: int) -> None:
        """Ends a job whose tasks are all done with: completed, or cancelled once nothing runs any more."""
        job = load_job(db, job_id)
        assert job is not None
        if job["state"] in _TERMINAL_JOB:
            return
        counts = dict(db.execute("SELECT state, COUNT(*) FROM render_tasks WHERE job_id = ? GROUP BY state",
                                 (job_id,)).fetchall())
        active = sum(counts.get(s, 0) for s in ACTIVE)
        if job["cancel_requested_at"]:
            if not active:
                set_row(db, "render_jobs", job_id, state=RenderJobState.CANCELLED.value, finished_at=utcnow())
                log.info("render_job_finished", job_id=job_id, state="cancelled")
            return
        frame_tasks = db.execute("SELECT COUNT(*) FROM render_tasks WHERE job_id = ? AND kind = 'frames'",
                                 (job_id,)).fetchone()[0]
        if frame_tasks and set(counts) == {TaskState.COMPLETED.value}:
            set_row(db, "render_jobs", job_id, state=RenderJobState.COMPLETED.value, finished_at=utcnow(), error=None)
            log.info("render_job_finished", job_id=job_id, state="completed")
