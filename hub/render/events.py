"""What render nodes' events and acknowledgements do to render tasks.

Subscribed to the ingest, so it runs inside the transaction that stores the event (so a
replayed event changes nothing). An event moves a task only when it names the
task's current attempt on the device that runs it; anything else is stray,
logged and counted.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlite_utils import Database

from protocol import codec
from protocol.messages import (
    CancelJob,
    CommandAck,
    FrameRendered,
    RenderProgress,
    RenderTaskCompleted,
    RenderTaskFailed,
)

from hub.mqtt import CommandOutbox, Effects, Received

from .schemas import TaskState
from .tasks import ACTIVE, TaskBook, load_task, parse_wire, set_row

log = structlog.get_logger("farmhand.hub.render.events")

RenderEvent = RenderProgress | FrameRendered | RenderTaskCompleted | RenderTaskFailed


class RenderTracker:
    def __init__(self, outbox: CommandOutbox, book: TaskBook) -> None:
        self.outbox = outbox
        self.book = book
        self.stray = 0

    def apply(self, msg: Received[RenderEvent | CommandAck]) -> Effects:
        """Ingest subscriber: runs inside the transaction that stored the event."""
        assert msg.db is not None and msg.node is not None
        db, node, at, body = msg.db, msg.node, msg.at, msg.body
        effects = Effects()
        if isinstance(body, CommandAck):
            self._ack(db, node, body, effects)
            return effects
        task = self._current(db, node, body)
        if task is None:
            return effects
        match body:
            case RenderProgress():
                if task["state"] == TaskState.ASSIGNED.value:
                    set_row(db, "render_tasks", task["id"], state=TaskState.RUNNING.value, ack_deadline=None)
            case FrameRendered():
                db.execute("UPDATE render_tasks SET frames_done = frames_done + 1, render_s = render_s + ?,"
                           " state = ?, ack_deadline = NULL WHERE id = ?",
                           (body.render_s, TaskState.RUNNING.value, task["id"]))
                db.execute("UPDATE render_outputs SET render_s = ?, node = ?, device = ? WHERE job_id = ?"
                           " AND preview = ? AND frame = ? AND sha256 = ?",
                           (body.render_s, node, body.device, task["job_id"], int(task["kind"] == "preview"),
                            body.frame, body.output_sha256))
            case RenderTaskCompleted():
                self.book.completed(db, task, at, body.duration_s)
                effects.reschedule = True
            case RenderTaskFailed():
                reason = body.reason + (f" — {body.output_tail[-1]}" if body.output_tail else "")
                effects.commands += self.book.attempt_failed(db, task, reason, counts=not body.cancelled,
                                                             duration_s=None)
                effects.reschedule = True
        return effects

    def _current(self, db: Database, node: str, body: RenderEvent) -> dict[str, Any] | None:
        ids = parse_wire(body.task_id)
        task = load_task(db, ids[0]) if ids else None
        if (task is None or task["attempt"] != ids[1] or task["state"] not in ACTIVE  # type: ignore[index]
                or (task["node"], task["device"]) != (node, body.device)):
            self.stray += 1
            log.info("stray_render_event", node=node, device=body.device, task_id=body.task_id, type=body.type,
                     task_state=task["state"] if task else None)
            return None
        return task

    def _ack(self, db: Database, node: str, ack: CommandAck, effects: Effects) -> None:
        """The print tracker has recorded the ack already; here only its meaning for a render task."""
        cmd = next(db.query("SELECT * FROM commands WHERE command_id = ? AND node = ?", (ack.command_id, node)), None)
        if cmd is None or cmd["type"] not in ("start_render", "cancel_job") or cmd["job_id"] is not None:
            return
        body = codec.decode(cmd["payload"]).body
        ids = parse_wire(body.task_id if cmd["type"] == "start_render" else (body.job_id or ""))  # type: ignore[union-attr]
        task = load_task(db, ids[0]) if ids else None
        if task is None:
            return
        current = (task["attempt"] == ids[1] and task["state"] in ACTIVE  # type: ignore[index]
                   and (task["node"], task["device"]) == (node, cmd["device"]))
        if cmd["type"] == "cancel_job":
            if current and ack.status == "done":
                effects.commands += self.book.attempt_failed(db, task, "cancelled", counts=False)
                effects.reschedule = True
            return
        if current:
            if ack.status in ("accepted", "done"):
                if task["state"] == TaskState.ASSIGNED.value:
                    set_row(db, "render_tasks", task["id"], state=TaskState.RUNNING.value, ack_deadline=None)
            else:
                effects.commands += self.book.attempt_failed(
                    db, task, f"{node}/{cmd['device']} {ack.status}: {ack.reason or 'no reason given'}", counts=True)
                effects.reschedule = True
        elif ack.status in ("accepted", "done") and task["command_id"] != cmd["command_id"]:
            # A late start of an attempt the hub gave up on: that copy must not render on.
            stop = CancelJob(command_id=f"cancel-{cmd['command_id']}", device=cmd["device"], job_id=body.task_id)  # type: ignore[union-attr]
            effects.commands.append(self.outbox.record(db, node, stop, None))
            log.warning("late_render_start_cancelled", task_id=task["id"], command_id=cmd["command_id"])
