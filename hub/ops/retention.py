"""Rows of the hub's two logs that have outlived their keep time go, a batch at a time.

The events table records what agents said and is also how a retransmitted
event is recognised. The telemetry table samples each device's temperatures.
Both grow with every printer-hour: a printing device sends a progress event
about once a second, which is some 86,000 rows a day for one printer. No
feature reads old rows; they are only there for someone looking back. So the
hub deletes rows older than the configured number of days: progress events
and telemetry samples after a short time, other events (starts, completions,
errors, acknowledgements) after a long one.

A pruned event can no longer be recognised as a duplicate. The keep times
must therefore be longer than an agent could stay away while holding an
event it sent but never saw acknowledged. Days are far longer than that.

Rows are deleted in id order and in small transactions, yielding between them,
so MQTT ingest and the API are never held up for long. Ids grow with the time a
row was written, so the first row to keep is found by scanning from the oldest,
which costs no more than the rows to delete.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from hub.config import RetentionConfig
from hub.store import Store, timestamp

log = structlog.get_logger("farmhand.hub.retention")

BATCH_ROWS = 5000


@dataclass(frozen=True)
class Log:
    """One kind of row to prune: its table, its time column and which rows of the table it covers."""

    name: str
    table: str
    time_column: str
    where: str = "1"


EVENTS = Log("events", "events", "received_at", "type != 'job_progress'")
PROGRESS = Log("progress_events", "events", "received_at", "type = 'job_progress'")
TELEMETRY = Log("telemetry", "telemetry", "ts")


class Retention:
    def __init__(self, store: Store, config: RetentionConfig) -> None:
        self.store = store
        self.config = config
        self.deleted: dict[str, int] = {kind.name: 0 for kind in (EVENTS, PROGRESS, TELEMETRY)}

    async def run(self) -> None:
        """Prune now, then once every interval, until cancelled."""
        while True:
            try:
                await self.prune()
            except Exception:
                log.exception("retention_failed")
            await asyncio.sleep(self.config.interval_s)

    async def prune(self, now: datetime | None = None) -> dict[str, int]:
        """Delete what is past its keep time as of ``now``; how many rows of each kind went."""
        now = now or datetime.now(UTC)
        keep = {EVENTS: self.config.events_days, PROGRESS: self.config.progress_days,
                TELEMETRY: self.config.telemetry_days}
        gone: dict[str, int] = {}
        for what, days in keep.items():
            if days > 0:
                gone[what.name] = await self._prune(what, timestamp(now - timedelta(days=days)))
        if any(gone.values()):
            log.info("retention_pruned", **gone)
        return gone

    async def _prune(self, what: Log, before: str) -> int:
        db = self.store.db
        first_kept = db.execute(f"SELECT id FROM {what.table} WHERE {what.time_column} >= ? ORDER BY id LIMIT 1",
                                (before,)).fetchone()
        bound = first_kept[0] if first_kept else db.execute(f"SELECT max(id) + 1 FROM {what.table}").fetchone()[0]
        if bound is None:
            return 0
        gone, after = 0, 0
        while True:
            # The next batch's id range first: each batch starts where the last ended, so rows kept
            # among the old ones (other events, when only progress goes) are passed over once.
            ids = db.execute(f"SELECT id FROM {what.table} WHERE id > ? AND id < ? AND {what.where}"
                             " ORDER BY id LIMIT ?", (after, bound, BATCH_ROWS)).fetchall()
            if not ids:
                return gone
            after = ids[-1][0]
            with self.store.transaction() as tx:
                batch = tx.execute(f"DELETE FROM {what.table} WHERE id >= ? AND id <= ? AND {what.where}",
                                   (ids[0][0], after)).rowcount
            gone += batch
            self.deleted[what.name] += batch
            if len(ids) < BATCH_ROWS:
                return gone
            await asyncio.sleep(0)  # let ingest and the API in between batches
