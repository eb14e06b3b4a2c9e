"""The hub's logs (events, telemetry samples) lose rows past their keep time, and only those."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog.testing

from hub.ops import retention
from hub.app import Hub
from hub.ops.retention import Retention, RetentionConfig
from hub.store import Store, timestamp

from .hubkit import eventually, hub_config

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def add_event(store: Store, seq: int, kind: str, age_days: float) -> None:
    at = timestamp(NOW - timedelta(days=age_days))
    store.db.execute("INSERT INTO events (sender, seq, node, type, ts, received_at, body)"
                     " VALUES ('pi-1', ?, 'pi-1', ?, ?, ?, '{}')", (seq, kind, at, at))


def add_sample(store: Store, age_days: float) -> None:
    store.db.execute("INSERT INTO telemetry (node, device, ts, temperatures, progress) VALUES ('pi-1', 'mk3s', ?,"
                     " '{}', NULL)", (timestamp(NOW - timedelta(days=age_days)),))


def events(store: Store) -> list[tuple[int, str]]:
    return [(r["seq"], r["type"]) for r in store.all("SELECT seq, type FROM events ORDER BY id")]


def sample_ages(store: Store) -> list[float]:
    return [round((NOW - datetime.fromisoformat(r["ts"])).total_seconds() / 86400, 1)
            for r in store.all("SELECT ts FROM telemetry ORDER BY id")]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path)
    yield store
    store.close()


async def test_old_progress_goes_first_and_other_events_after_their_longer_keep(store: Store) -> None:
    # Written in time order, as the hub writes them: ids grow with received_at.
    add_event(store, 1, "job_completed", 100)
    add_event(store, 2, "job_progress", 100)
    add_event(store, 3, "job_started", 30)
    add_event(store, 4, "job_progress", 8)
    add_event(store, 5, "device_error", 8)
    add_event(store, 6, "job_progress", 6)
    add_event(store, 7, "job_completed", 1)

    gone = await Retention(store, RetentionConfig(events_days=90, progress_days=7)).prune(NOW)

    assert events(store) == [(3, "job_started"), (5, "device_error"), (6, "job_progress"), (7, "job_completed")]
    assert gone["events"] == 1 and gone["progress_events"] == 2


async def test_telemetry_samples_older_than_their_keep_go(store: Store) -> None:
    for age in (20, 15, 13, 1, 0):
        add_sample(store, age)

    await Retention(store, RetentionConfig(telemetry_days=14)).prune(NOW)

    assert sample_ages(store) == [13.0, 1.0, 0.0]


async def test_many_rows_go_in_batches_passing_over_the_rows_kept_between_them(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "BATCH_ROWS", 3)
    seq = 0
    for age in range(20, 0, -1):  # progress interleaved with a completion every fourth row
        seq += 1
        add_event(store, seq, "job_completed" if seq % 4 == 0 else "job_progress", age)

    pruning = Retention(store, RetentionConfig(progress_days=7))
    gone = await pruning.prune(NOW)

    kept = events(store)
    assert gone["progress_events"] == 10  # the progress of days 20…8, less the completions among them
    assert all(kind == "job_completed" for s, kind in kept if s <= 13)
    assert [s for s, _ in kept if s > 13] == list(range(14, 21))
    assert pruning.deleted["progress_events"] == 10


async def test_zero_days_keeps_everything(store: Store) -> None:
    add_event(store, 1, "job_progress", 400)
    add_event(store, 2, "job_completed", 400)
    add_sample(store, 400)

    gone = await Retention(store, RetentionConfig(events_days=0, progress_days=0, telemetry_days=0)).prune(NOW)

    assert gone == {} and len(events(store)) == 2 and len(sample_ages(store)) == 1


async def test_the_pass_repeats_every_interval_and_goes_on_after_one_fails(store: Store) -> None:
    pruning = Retention(store, RetentionConfig(progress_days=7, interval_s=0.05))
    add_event(store, 1, "job_progress", 100)
    with structlog.testing.capture_logs() as logged:
        task = asyncio.create_task(pruning.run())
        try:
            await eventually(lambda: pruning.deleted["progress_events"] == 1, "the first pass")
            add_event(store, 2, "job_progress", 100)
            await eventually(lambda: pruning.deleted["progress_events"] == 2, "a second pass, an interval later")

            store.db.execute("ALTER TABLE events RENAME TO events_away")  # the next passes fail: no such table
            await eventually(lambda: any(e["event"] == "retention_failed" for e in logged), "a pass to fail")
            store.db.execute("ALTER TABLE events_away RENAME TO events")
            add_event(store, 3, "job_progress", 100)
            await eventually(lambda: pruning.deleted["progress_events"] == 3, "a pass after the failure")
            assert events(store) == [] and not task.done()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_running_hub_prunes_on_start_and_counts_what_went(tmp_path: Path) -> None:
    seeded = Store(tmp_path)
    ancient = datetime.now(UTC) - timedelta(days=400)
    for seq in (1, 2):
        at = timestamp(ancient + timedelta(seconds=seq))
        seeded.db.execute("INSERT INTO events (sender, seq, node, type, ts, received_at, body)"
                          " VALUES ('pi-1', ?, 'pi-1', 'job_progress', ?, ?, '{}')", (seq, at, at))
    seeded.close()

    hub = Hub(hub_config(tmp_path, None))
    await hub.start()
    try:
        for _ in range(200):
            if hub.health().counters["retention_deleted"]["progress_events"] == 2:
                break
            await asyncio.sleep(0.01)
        assert hub.health().counters["retention_deleted"]["progress_events"] == 2
        assert hub.store is not None and hub.store.all("SELECT id FROM events") == []
    finally:
        await hub.stop()
