"""The first scheduler: FIFO (by priority, then age) onto idle devices.

A pass runs when woken (a new job, a device that became idle, a job that
ended) and on a periodic tick that also expires start commands nobody
acknowledged. Assignment is written before the start command is published, so
a crash in between leaves an assigned job whose command is re-sent on the next
connect — never a job started twice or lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from protocol.messages import StartJob

from . import jobs
from .commands import Outbox, Outgoing
from .schemas import ACTIVE_STATES, JobState
from .store import Store, timestamp, utcnow

log = structlog.get_logger("farmhand.hub.scheduler")

_ACTIVE = tuple(s.value for s in ACTIVE_STATES)

# Print jobs go to devices that print: a render node declares render capabilities.
IDLE_DEVICES = f"""
    SELECT d.node, d.id FROM devices d JOIN nodes n ON n.id = d.node
    WHERE n.online = 1 AND d.listed = 1 AND d.state = 'idle' AND d.render IS NULL
      AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.node = d.node AND j.device = d.id
                      AND j.state IN ({', '.join('?' * len(_ACTIVE))}))
    ORDER BY d.updated_at, d.node, d.id
"""


class Scheduler:
    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        *,
        ack_timeout_s: float,
        file_url: Callable[[str], str],
        connected: Callable[[], bool],
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.ack_timeout = timedelta(seconds=ack_timeout_s)
        self.file_url = file_url
        self.connected = connected
        self.tick_s = min(1.0, ack_timeout_s / 4)
        self._wake = asyncio.Event()
        self.assignments = 0
        self.expired = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                self.run_once()
            except Exception:
                log.exception("scheduler_pass_failed")
            # Not wait_for: on 3.11 it swallows a cancel that lands as the wake-up
            # completes, and stop() would then wait for this loop forever.
            try:
                async with asyncio.timeout(self.tick_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def run_once(self) -> int:
        # Offline, the hub hears no acks and its view of devices is stale: wait.
        if not self.connected():
            return 0
        self.expire_unacknowledged()
        return self.assign()

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
        idle = [(r["node"], r["id"]) for r in self.store.all(IDLE_DEVICES, _ACTIVE)]
        if not idle:
            return 0
        queued = self.store.all(
            "SELECT id, pin_node, pin_device FROM jobs WHERE state = ? ORDER BY priority DESC, id",
            (JobState.QUEUED.value,),
        )
        sent = 0
        for job in queued:
            pin = (job["pin_node"], job["pin_device"]) if job["pin_node"] else None
            device = pin if pin in idle else (None if pin else idle[0])
            if device is None:
                continue  # its device is busy; later jobs may still run elsewhere
            idle.remove(device)
            out = self._assign(job["id"], *device)
            if out is not None:
                self.outbox.send(out)
                sent += 1
            if not idle:
                break
        self.assignments += sent
        return sent

    def _assign(self, job_id: int, node: str, device: str) -> Outgoing | None:
        with self.store.transaction() as db:
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
