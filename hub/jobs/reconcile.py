"""Reconciling the hub's jobs with what the devices say they run.

The hub leaves a job running while its node is offline: a serial print goes on
from the printer's SD card, and the agent may come back. What ends the wait is
the node itself. Every birth says what each device runs (``NodeState.jobs``);
a job whose device now runs another job, or none, is **interrupted**: it keeps
its last progress and is then queued again or left interrupted by its policy
(``requeue_interrupted`` per job, else ``[jobs]`` farm-wide, up to
``max_attempts`` starts). A device that still prints but cannot name its job
(the printer's own SD print after an agent restart) keeps the job. A device
that reports a job the hub does not run there is shown as it reports and
raises an alert. A node gone longer than ``offline_deadline_s`` has its jobs
interrupted too.

The birth is compared only once the events the agent had spooled before it
were applied (its ``last_event_seq``): a job that completed while the broker
was away must arrive as completed, not be taken for interrupted and printed
again. A birth older than events already applied (the retained one a
restarted hub receives) says nothing new and is not compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlite_utils import Database

from protocol.messages import DeviceState, NodeState

from hub.config import JobsConfig
from hub.mqtt import CommandOutbox, Effects, RebirthRequests, Received
from hub.ops import raise_alert
from hub.store import Store, timestamp, utcnow

from . import service as jobs
from .schemas import JobState

log = structlog.get_logger("farmhand.hub.reconcile")

_RUNNING = (JobState.PRINTING.value, JobState.PAUSED.value)
_BUSY = (DeviceState.PRINTING, DeviceState.PAUSED)


@dataclass
class _Birth:
    state: NodeState
    wait_for_seq: int


class Reconciler:
    def __init__(self, store: Store, outbox: CommandOutbox, config: JobsConfig, rebirths: RebirthRequests) -> None:
        self.store = store
        self.outbox = outbox
        self.rebirths = rebirths
        self.config = config
        self.interrupted = 0
        self.unknown_jobs = 0
        self._waiting: dict[str, _Birth] = {}
        self._last_seq: dict[str, int] = {}

    # ------------------------------------------------------------------ births and events

    def on_birth(self, msg: Received[NodeState]) -> Effects:
        """Ingest subscriber for births (and deaths)."""
        assert msg.node is not None
        return Effects(reschedule=self.birth(msg.node, msg.body))

    def before(self, node: str, seq: int, prev: int | None = None) -> None:
        """Ingest seq watcher, before the event is stored: a gap asks the node for a rebirth. A gap the
        node will fill (its ``prev_seq`` is above what is stored: the broker dropped it on the way, and the
        node sends it again until the hub confirms it) needs none; one the node itself dropped does."""
        seen = self.last_seq(node)
        if seen and seq > seen + 1 and (prev is None or prev <= seen):
            self.rebirths.ask(node, f"seq gap: {seq} after {seen}")

    def after(self, node: str, seq: int) -> bool:
        """Ingest seq watcher, after the event was stored or found a replay."""
        return self.event_applied(node, seq)

    def birth(self, node: str, body: NodeState) -> bool:
        """A node (re)connected; returns True when a device may have become free."""
        self._waiting.pop(node, None)
        if not body.online or not body.jobs:
            return False  # a death, or an agent too old to say what it runs
        if self._seen(node) > (body.last_event_seq or 0):
            # A retained birth, older than events already applied (a hub that restarted): stale.
            # Not acted on, but a fresh one is asked for: the node is still connected and would not send one.
            log.info("birth_older_than_its_events", node=node, birth_seq=body.last_event_seq, seen=self._seen(node))
            self.rebirths.ask(node, f"birth older than its events: seq {body.last_event_seq} after {self._seen(node)}")
            return False
        if body.events_unsent and body.last_event_seq is not None \
                and self._seen(node) < body.last_event_seq:
            self._waiting[node] = _Birth(body, body.last_event_seq)
            log.info("reconcile_deferred", node=node, until_seq=body.last_event_seq, unsent=body.events_unsent)
            return False
        return self._compare(node, body)

    def event_applied(self, node: str, seq: int) -> bool:
        """An event of ``node`` was stored (or was a duplicate): a deferred birth may be due now."""
        if seq > self._last_seq.get(node, 0):
            self._last_seq[node] = seq
        waiting = self._waiting.get(node)
        if waiting is None or seq < waiting.wait_for_seq:
            return False
        del self._waiting[node]
        return self._compare(node, waiting.state)

    def last_seq(self, node: str) -> int:
        """The highest event seq stored from ``node`` (0: none yet)."""
        return self._seen(node)

    def _seen(self, node: str) -> int:
        if node not in self._last_seq:
            row = self.store.db.execute("SELECT MAX(seq) FROM events WHERE sender = ?", (node,)).fetchone()
            self._last_seq[node] = row[0] or 0
        return self._last_seq[node]

    def _compare(self, node: str, body: NodeState) -> bool:
        reported = {j.device: j for j in body.jobs}
        freed = False
        with self.store.transaction() as db:
            for job in db.query(f"SELECT * FROM jobs WHERE node = ? AND state IN ({_marks(_RUNNING)})",
                                (node, *_RUNNING)):
                now = reported.get(job["device"])
                where = f"{node}/{job['device']}"
                if now is not None and now.job_id == str(job["id"]):
                    continue
                if now is not None and now.job_id is None and now.state in _BUSY:
                    log.info("job_kept_device_still_printing", job_id=job["id"], device=where)
                    continue
                says = "is gone from its node" if now is None else \
                    f"reports {'job ' + now.job_id if now.job_id else now.state.value}"
                freed |= self._interrupt(db, job, f"{where} {says} after its node reconnected")
            for now in body.jobs:
                if now.job_id is not None and not self._runs(db, node, now.device, now.job_id):
                    self.unknown_jobs += raise_alert(
                        db, "unknown_job", f"{node}/{now.device}",
                        f"{node}/{now.device} reports job {now.job_id}, which the hub does not run there")
        return freed

    @staticmethod
    def _runs(db: Database, node: str, device: str, job_id: str) -> bool:
        return db.execute(
            f"SELECT 1 FROM jobs WHERE id = ? AND node = ? AND device = ? AND state IN ({_marks(JOB_ACTIVE)})",
            (job_id, node, device, *JOB_ACTIVE)).fetchone() is not None

    # ------------------------------------------------------------------ offline nodes

    def overdue_offline(self) -> int:
        """Interrupt the jobs of nodes offline past the deadline (a scheduler pass step)."""
        cutoff = timestamp(datetime.now(UTC) - timedelta(seconds=self.config.offline_deadline_s))
        overdue = self.store.all(
            f"SELECT j.* FROM jobs j JOIN nodes n ON n.id = j.node WHERE n.online = 0 AND n.updated_at < ?"
            f" AND j.state IN ({_marks(_RUNNING)})", (cutoff, *_RUNNING))
        for job in overdue:
            with self.store.transaction() as db:
                self._interrupt(db, job, f"{job['node']} has been offline for more than "
                                         f"{self.config.offline_deadline_s:g} s")
        return len(overdue)

    # ------------------------------------------------------------------ the policy

    def _interrupt(self, db: Database, job: dict[str, Any], reason: str) -> bool:
        self.interrupted += 1
        at = utcnow()
        jobs.finish(db, self.outbox, job["id"], JobState.INTERRUPTED, at, error=f"interrupted: {reason}")
        requeue = job["requeue_interrupted"]
        requeue = self.config.requeue_interrupted if requeue is None else bool(requeue)
        if requeue and job["attempt"] + 1 < self.config.max_attempts:
            ended = jobs.load(db, job["id"])
            assert ended is not None
            jobs.retry(db, ended, f"interrupted: {reason}")
        log.warning("job_interrupted", job_id=job["id"], device=f"{job['node']}/{job['device']}", reason=reason,
                    progress=job["progress"], requeued=requeue)
        return True

    def counters(self) -> dict[str, int]:
        return {"jobs_interrupted": self.interrupted, "unknown_jobs_reported": self.unknown_jobs,
                "reconcile_waiting": len(self._waiting)}


JOB_ACTIVE = (JobState.ASSIGNED.value, *_RUNNING)


def _marks(values: tuple[str, ...]) -> str:
    return ", ".join("?" * len(values))
