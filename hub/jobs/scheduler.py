"""The scheduler: queued jobs onto free printers under ``matching``'s rules.

A pass runs when woken (a new job, a device that became idle, a job that
ended) and on a periodic tick that also expires start commands nobody
acknowledged. Assignment is written before the start command is published, so
a crash in between leaves an assigned job whose command is re-sent on the next
connect — never a job started twice or lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from sqlite_utils import Database

from protocol.messages import StartJob

from hub.mqtt import CommandOutbox, Outgoing
from hub.store import Store, timestamp, utcnow

from . import service as jobs
from .matching import plan
from .passes import run_passes
from .schemas import JobState
from .snapshot import free_printers, queued_needs

log = structlog.get_logger("farmhand.hub.scheduler")


class Scheduler:
    def __init__(
        self,
        store: Store,
        outbox: CommandOutbox,
        *,
        ack_timeout_s: float,
        file_url: Callable[[str], str],
        connected: Callable[[], bool],
        before_pass: Callable[[], object] = lambda: None,
    ) -> None:
        """``before_pass``: bookkeeping that must land before matching (filament booked, failed jobs retried)."""
        self.store = store
        self.outbox = outbox
        self.ack_timeout = timedelta(seconds=ack_timeout_s)
        self.file_url = file_url
        self.connected = connected
        self.tick_s = min(1.0, ack_timeout_s / 4)
        self._wake = asyncio.Event()
        self.assignments = 0
        self.expired = 0
        self.passes = 0
        self.pass_seconds = 0.0
        self.before_pass = before_pass

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        await run_passes(self.run_once, self._wake, self.tick_s, "scheduler")

    def run_once(self) -> int:
        # Offline, the hub hears no acks and its view of devices is stale: wait.
        if not self.connected():
            return 0
        started = time.perf_counter()
        self.expire_unacknowledged()
        self.before_pass()
        assigned = self.assign()
        self.passes += 1
        self.pass_seconds += time.perf_counter() - started
        return assigned

    def _deadline(self) -> str:
        return timestamp(datetime.now(UTC) + self.ack_timeout)

    def refresh_deadlines(self) -> int:
        """On (re)connect: the pending start commands go out again, so their clocks restart."""
        cur = self.store.db.execute("UPDATE jobs SET ack_deadline = ? WHERE state = ?",
                                    (self._deadline(), JobState.ASSIGNED.value))
        return cur.rowcount

    def expire_unacknowledged(self) -> int:
        expired = self.store.all("SELECT * FROM jobs WHERE state = ? AND ack_deadline < ?",
                                 (JobState.ASSIGNED.value, utcnow()))
        for job in expired:
            with self.store.transaction() as db:
                jobs.back_to_queue(db, self.outbox, job, f"{job['node']}/{job['device']} did not acknowledge "
                                   f"{job['command_id']} within {self.ack_timeout.total_seconds():g} s")
        self.expired += len(expired)
        return len(expired)

    def assign(self) -> int:
        printers = free_printers(self.store.db)
        if not printers:
            return 0
        pairs = plan(queued_needs(self.store.db), printers)
        if not pairs:
            return 0
        # One transaction for the whole pass: one fsync, and still every start is
        # recorded before any is published.
        with self.store.transaction() as db:
            outgoing = [out for job_id, p in pairs if (out := self._assign(db, job_id, p.node, p.device))]
        for out in outgoing:
            self.outbox.send(out)
        self.assignments += len(outgoing)
        return len(outgoing)

    def _assign(self, db: Database, job_id: int, node: str, device: str) -> Outgoing | None:
        job = jobs.load(db, job_id)
        if job is None or job["state"] != JobState.QUEUED.value:
            return None
        size = db.execute("SELECT size FROM files WHERE sha256 = ?", (job["file_sha256"],)).fetchone()[0]
        command_id = f"start-{job_id}-{job['attempt']}"
        jobs.set_fields(db, job_id, state=JobState.ASSIGNED.value, node=node, device=device,
                        command_id=command_id, ack_deadline=self._deadline(), assigned_at=utcnow())
        body = StartJob(command_id=command_id, device=device, job_id=str(job_id),
                        file_sha256=job["file_sha256"], file_size=size,
                        file_url=self.file_url(job["file_sha256"]))
        out = self.outbox.record(db, node, body, job_id)
        log.info("job_assigned", job_id=job_id, device=f"{node}/{device}", command_id=command_id)
        return out

    def counters(self) -> dict[str, int]:
        return {"assignments": self.assignments, "ack_timeouts": self.expired}
