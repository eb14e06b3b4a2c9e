"""The render dispatcher: queued tasks onto idle, capable render nodes.

Highest job priority first, a job's preview before its frames, then oldest.
A device is a candidate when its declared render capabilities fit the job
(``plan.refusal``), the task has not failed on it before, and its node has
not failed this job ``max_node_failures`` times. Each pass also takes back
tasks from nodes gone offline and start commands nobody acknowledged. As in
the print scheduler, the assignment is committed before StartRender is published.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from protocol.messages import StartRender

from hub.jobs import run_passes
from hub.mqtt import CommandOutbox, Outgoing
from hub.store import Store, timestamp, utcnow

from .schemas import RenderJobState, TaskState
from .tasks import ACTIVE, TaskBook, load_job, load_task, plan, render_devices, set_row, wire_id

log = structlog.get_logger("farmhand.hub.render.dispatch")

_QUEUED = """
    SELECT t.id AS task_id, j.* FROM render_tasks t JOIN render_jobs j ON j.id = t.job_id
    WHERE t.state = 'queued' AND j.state IN ('queued', 'rendering') AND j.cancel_requested_at IS NULL
    ORDER BY j.priority DESC, t.kind = 'preview' DESC, j.id, t.id
"""


class RenderDispatcher:
    def __init__(self, store: Store, outbox: CommandOutbox, book: TaskBook, *, ack_timeout_s: float,
                 blend_url: Callable[[str], str], upload_url: Callable[[], str],
                 connected: Callable[[], bool]) -> None:
        self.store = store
        self.outbox = outbox
        self.book = book
        self.ack_timeout = timedelta(seconds=ack_timeout_s)
        self.blend_url = blend_url
        self.upload_url = upload_url
        self.connected = connected
        self.tick_s = min(1.0, ack_timeout_s / 4)
        self._wake = asyncio.Event()
        self.assignments = 0
        self.expired = 0
        self.taken_back = 0
        self.pass_s = 0.0  # time spent in passes that assigned something: the scheduler's own overhead

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        await run_passes(self.run_once, self._wake, self.tick_s, "render_dispatch")

    def run_once(self) -> int:
        if not self.connected():
            return 0
        started = time.perf_counter()
        self.take_back_offline()
        self.expire_unacknowledged()
        sent = self.assign()
        if sent:
            self.pass_s += time.perf_counter() - started
        return sent

    # ------------------------------------------------------------------ taking tasks back

    def take_back_offline(self) -> int:
        lost = self.store.all(
            f"SELECT t.* FROM render_tasks t JOIN nodes n ON n.id = t.node"
            f" WHERE n.online = 0 AND t.state IN ({', '.join('?' * len(ACTIVE))})", ACTIVE)
        out: list[Outgoing] = []
        for task in lost:
            with self.store.transaction() as db:
                # Should the node come back still rendering it, it is told to stop.
                out.append(self.book.cancel_command(db, task))
                out += self.book.attempt_failed(db, task, f"{task['node']} went offline", counts=False)
        self._send(out)
        self.taken_back += len(lost)
        return len(lost)

    def expire_unacknowledged(self) -> int:
        expired = self.store.all("SELECT * FROM render_tasks WHERE state = ? AND ack_deadline < ?",
                                 (TaskState.ASSIGNED.value, utcnow()))
        out: list[Outgoing] = []
        for task in expired:
            with self.store.transaction() as db:
                out += self.book.attempt_failed(
                    db, task, f"{task['node']}/{task['device']} did not acknowledge {task['command_id']} within "
                              f"{self.ack_timeout.total_seconds():g} s", counts=True)
        self._send(out)
        self.expired += len(expired)
        return len(expired)

    # ------------------------------------------------------------------ assigning

    def assign(self) -> int:
        devices = render_devices(self.store.db, idle_only=True)
        if not devices:
            return 0
        queued = self.store.all(_QUEUED)
        if not queued:
            return 0
        failed_on, blocked = self._failures({row["id"] for row in queued})
        sent = 0
        for row in queued:
            choice = next((d for d in devices
                           if (d["node"], d["id"]) not in failed_on[row["task_id"]]
                           and d["node"] not in blocked[row["id"]]
                           and plan.refusal(row, d["render"], d["capabilities"]) is None), None)
            if choice is None:
                continue
            devices.remove(choice)
            out = self._assign(row["task_id"], choice["node"], choice["id"])
            if out is not None:
                self.outbox.send(out)
                sent += 1
            if not devices:
                break
        self.assignments += sent
        return sent

    def _failures(self, job_ids: set[int]) -> tuple[dict[int, set[tuple[str, str]]], dict[int, set[str]]]:
        failed_on: dict[int, set[tuple[str, str]]] = defaultdict(set)
        per_node: dict[tuple[int, str], int] = defaultdict(int)
        limits: dict[int, int] = {}
        marks = ", ".join("?" * len(job_ids))
        for r in self.store.all(f"SELECT f.task_id, f.job_id, f.node, f.device, j.max_node_failures FROM"
                                f" render_failures f JOIN render_jobs j ON j.id = f.job_id"
                                f" WHERE f.counts = 1 AND f.job_id IN ({marks})", tuple(job_ids)):
            failed_on[r["task_id"]].add((r["node"], r["device"]))
            per_node[(r["job_id"], r["node"])] += 1
            limits[r["job_id"]] = r["max_node_failures"]
        blocked: dict[int, set[str]] = defaultdict(set)
        for (job_id, node), n in per_node.items():
            if n >= limits[job_id]:
                blocked[job_id].add(node)
        return failed_on, blocked

    def _assign(self, task_id: int, node: str, device: str) -> Outgoing | None:
        with self.store.transaction() as db:
            task = load_task(db, task_id)
            if task is None or task["state"] != TaskState.QUEUED.value:
                return None
            job = load_job(db, task["job_id"])
            assert job is not None
            size = db.execute("SELECT size FROM files WHERE sha256 = ?", (job["blend_sha256"],)).fetchone()[0]
            command_id = f"start-render-{task_id}-{task['attempt']}"
            now = utcnow()
            set_row(db, "render_tasks", task_id, state=TaskState.ASSIGNED.value, node=node, device=device,
                    command_id=command_id, ack_deadline=self._deadline(), assigned_at=now, finished_at=None)
            if job["state"] == RenderJobState.QUEUED.value:
                set_row(db, "render_jobs", job["id"], state=RenderJobState.RENDERING.value,
                        started_at=job["started_at"] or now)
            body = StartRender(
                command_id=command_id, device=device, task_id=wire_id(task), job_id=str(job["id"]),
                blend_sha256=job["blend_sha256"], blend_size=size, blend_url=self.blend_url(job["blend_sha256"]),
                upload_url=self.upload_url(), frame_start=task["frame_start"], frame_end=task["frame_end"],
                engine=job["engine"], cycles_device=job["cycles_device"], samples=task["samples"],
                resolution_pct=task["resolution_pct"], file_format=job["file_format"], timeout_s=job["timeout_s"],
                camera=job["camera"],
                # Off is always safe; on keeps the file's setting, since not every Blender build has a denoiser.
                denoise=None if job["denoise"] and task["kind"] != "preview" else False)
            out = self.outbox.record(db, node, body, None)
        log.info("render_task_assigned", task_id=task_id, job_id=task["job_id"], kind=task["kind"],
                 frames=f"{task['frame_start']}-{task['frame_end']}", device=f"{node}/{device}")
        return out

    def _deadline(self) -> str:
        return timestamp(datetime.now(UTC) + self.ack_timeout)

    def refresh_deadlines(self) -> None:
        self.store.db.execute("UPDATE render_tasks SET ack_deadline = ? WHERE state = ?",
                              (self._deadline(), TaskState.ASSIGNED.value))

    def _send(self, out: list[Outgoing]) -> None:
        for o in out:
            self.outbox.send(o)
        if out:
            self.wake()

    def counters(self) -> dict[str, Any]:
        return {"assignments": self.assignments, "ack_timeouts": self.expired, "taken_back": self.taken_back}
