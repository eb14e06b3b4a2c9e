"""The hub's database: migrations are numbered, applied once, atomically, and never backwards."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.ops.alerts import raise_alert
from hub.schema import MIGRATIONS
from hub.store import DB_NAME, SchemaTooNew, Store, timestamp


def versions(path: Path) -> list[int]:
    with sqlite3.connect(path / DB_NAME) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]


def test_fresh_database_gets_every_migration_in_wal_mode(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        assert store.schema_version == len(MIGRATIONS)
        assert {"files", "jobs", "commands", "nodes", "devices", "events", "telemetry"} <= set(store.db.table_names())
        assert store.db.journal_mode == "wal"
    finally:
        store.close()
    assert versions(tmp_path) == list(range(1, len(MIGRATIONS) + 1))


def test_reopening_applies_only_new_migrations_and_keeps_data(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.db.execute("INSERT INTO files (sha256, name, size, created_at) VALUES ('ab', 'x.gcode', 1, 'now')")
    store.close()

    added = (*MIGRATIONS, "ALTER TABLE files ADD COLUMN note TEXT;")
    store = Store(tmp_path, added)
    try:
        assert store.schema_version == len(added)
        assert store.all("SELECT name, note FROM files") == [{"name": "x.gcode", "note": None}]
    finally:
        store.close()
    # Opening it again applies nothing a second time (ALTER TABLE would fail if it did).
    Store(tmp_path, added).close()
    assert versions(tmp_path) == list(range(1, len(added) + 1))


def test_module_alerts_opened_twice_by_an_older_hub_are_left_open_once(tmp_path: Path) -> None:
    """Version 10 makes a module's alert open at most once; a database with duplicates still opens."""
    store = Store(tmp_path, MIGRATIONS[:9])
    raised = "INSERT INTO alerts (kind, subject, message, created_at) VALUES (?, ?, ?, ?)"
    for at in ("2026-01-01", "2026-01-02"):
        store.db.execute(raised, ("unknown_job", "pi-1/mk3s-1", "reports job 7", at))
    store.db.execute(raised, ("low_stock", "spool/1", "12 g left", "2026-01-03"))
    store.close()

    store = Store(tmp_path)
    try:
        assert store.all("SELECT kind, created_at FROM alerts WHERE resolved_at IS NULL ORDER BY id") == [
            {"kind": "unknown_job", "created_at": "2026-01-01"}, {"kind": "low_stock", "created_at": "2026-01-03"}]
        assert not raise_alert(store.db, "low_stock", "spool/1", "12 g left")
        assert raise_alert(store.db, "low_stock", "spool/2", "12 g left")
    finally:
        store.close()


def test_a_failing_migration_leaves_the_previous_version_intact(tmp_path: Path) -> None:
    Store(tmp_path).close()
    broken = (*MIGRATIONS, "CREATE TABLE half (x INTEGER); INSERT INTO no_such_table VALUES (1);")
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        Store(tmp_path, broken)
    store = Store(tmp_path)
    try:
        assert store.schema_version == len(MIGRATIONS)
        assert "half" not in store.db.table_names()
    finally:
        store.close()


def test_a_database_from_a_newer_hub_is_refused(tmp_path: Path) -> None:
    Store(tmp_path, (*MIGRATIONS, "CREATE TABLE later (x INTEGER);")).close()
    with pytest.raises(SchemaTooNew, match=f"knows up to {len(MIGRATIONS)}"):
        Store(tmp_path)


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31),
                    timezones=st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
                    .map(timezone)))
def test_timestamps_are_the_utc_isoformat_to_the_millisecond(moment: datetime) -> None:
    """``timestamp`` formats each second once and caches it: its text must stay what isoformat makes, for
    a second seen before and for its neighbours."""
    for near in (moment, moment + timedelta(seconds=1), moment - timedelta(seconds=1), moment, moment + timedelta(
            microseconds=999)):
        assert timestamp(near) == near.astimezone(UTC).isoformat(timespec="milliseconds")
    assert timestamp(moment.replace(tzinfo=None)) == moment.replace(tzinfo=None).astimezone(UTC).isoformat(
        timespec="milliseconds")  # naive: local time, as before
