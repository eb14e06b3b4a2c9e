"""The hub's SQLite database: one file, WAL, numbered migrations.

Every other hub module reads and writes through ``Store.db`` (a sqlite-utils
``Database``) on the event loop's thread, so there is exactly one writer and a
transaction never interleaves with another. Statements are short; the slowest
path (an event plus its job update) is one small transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlite_utils import Database

from .export.migration import OUTBOUND_EVENTS_MIGRATION  # its DDL lives beside the code that reads it

log = structlog.get_logger("farmhand.hub.store")

DB_NAME = "hub.db"

# Append only: a released migration is never edited, its number is its identity.
MIGRATIONS: tuple[str, ...] = (
    # 1: files, jobs, the command outbox, the fleet, events and telemetry history.
    # jobs.request_key makes a retried submission (same key) return the first job.
    """
    CREATE TABLE files (
        sha256 TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        file_sha256 TEXT NOT NULL REFERENCES files(sha256),
        state TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        pin_node TEXT,
        pin_device TEXT,
        node TEXT,
        device TEXT,
        attempt INTEGER NOT NULL DEFAULT 0,
        command_id TEXT,
        ack_deadline TEXT,
        cancel_requested_at TEXT,
        progress REAL,
        lines INTEGER,
        lines_total INTEGER,
        resends INTEGER,
        extruded_mm REAL,
        duration_s REAL,
        error TEXT,
        request_key TEXT UNIQUE,
        created_at TEXT NOT NULL,
        assigned_at TEXT,
        started_at TEXT,
        finished_at TEXT
    );
    CREATE INDEX jobs_by_state ON jobs(state, priority, id);
    CREATE INDEX jobs_by_device ON jobs(node, device, state);
    CREATE TABLE commands (
        command_id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        job_id INTEGER REFERENCES jobs(id),
        node TEXT NOT NULL,
        device TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL,
        superseded_at TEXT,
        ack_status TEXT,
        ack_reason TEXT,
        acked_at TEXT
    );
    CREATE INDEX commands_pending ON commands(ack_status, superseded_at);
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        online INTEGER NOT NULL,
        agent_version TEXT NOT NULL DEFAULT '',
        hostname TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    );
    CREATE TABLE devices (
        node TEXT NOT NULL,
        id TEXT NOT NULL,
        kind TEXT,
        model TEXT,
        firmware TEXT,
        capabilities TEXT NOT NULL DEFAULT '[]',
        render TEXT,
        listed INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'disconnected',
        job_id TEXT,
        progress REAL,
        temperatures TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (node, id)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sender TEXT NOT NULL,
        seq INTEGER NOT NULL,
        node TEXT NOT NULL,
        type TEXT NOT NULL,
        ts TEXT NOT NULL,
        received_at TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE UNIQUE INDEX events_sender_seq ON events(sender, seq);
    CREATE TABLE telemetry (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        node TEXT NOT NULL,
        device TEXT NOT NULL,
        ts TEXT NOT NULL,
        temperatures TEXT NOT NULL,
        progress REAL
    );
    CREATE INDEX telemetry_by_device ON telemetry(node, device, ts);
    """,
    # Slots 2-4 are held for work in progress; each is replaced by its DDL before release.
    # 2: file analyses, slicing, costs, filament stock (Spoolman's vendor/filament/spool
    # names), alerts, device profiles, the scheduler's per-job constraints and orders.
    # job_requirements is kept beside jobs so a job without a row has no constraints.
    """
    CREATE TABLE file_analyses (
        sha256 TEXT PRIMARY KEY REFERENCES files(sha256),
        kind TEXT NOT NULL,
        ok INTEGER NOT NULL,
        error TEXT,
        body TEXT,
        analyzed_at TEXT NOT NULL
    );
    CREATE TABLE slicing_profiles (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE TABLE slice_jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        mesh_sha256 TEXT NOT NULL REFERENCES files(sha256),
        machine_model TEXT NOT NULL,
        material TEXT NOT NULL,
        quality TEXT NOT NULL,
        state TEXT NOT NULL,
        error TEXT,
        gcode_sha256 TEXT REFERENCES files(sha256),
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT
    );
    CREATE INDEX slice_jobs_by_inputs ON slice_jobs(mesh_sha256, machine_model, material, quality, state);
    CREATE INDEX slice_jobs_by_gcode ON slice_jobs(gcode_sha256);
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE vendors (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        comment TEXT,
        registered TEXT NOT NULL
    );
    CREATE TABLE filaments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        vendor_id INTEGER REFERENCES vendors(id),
        name TEXT,
        material TEXT NOT NULL,
        color_hex TEXT,
        density REAL NOT NULL,
        diameter REAL NOT NULL,
        price REAL,
        weight REAL,
        spool_weight REAL,
        comment TEXT,
        registered TEXT NOT NULL
    );
    CREATE TABLE spools (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        filament_id INTEGER NOT NULL REFERENCES filaments(id),
        initial_weight REAL NOT NULL,
        used_weight REAL NOT NULL DEFAULT 0,
        price REAL,
        lot_nr TEXT,
        location TEXT,
        comment TEXT,
        archived INTEGER NOT NULL DEFAULT 0,
        node TEXT,
        device TEXT,
        low_alerted INTEGER NOT NULL DEFAULT 0,
        registered TEXT NOT NULL,
        first_used TEXT,
        last_used TEXT
    );
    CREATE UNIQUE INDEX spools_loaded ON spools(node, device) WHERE node IS NOT NULL;
    CREATE TABLE spool_usage (
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        attempt INTEGER NOT NULL,
        spool_id INTEGER REFERENCES spools(id),
        grams REAL NOT NULL,
        booked_at TEXT NOT NULL,
        PRIMARY KEY (job_id, attempt)
    );
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at TEXT NOT NULL,
        resolved_at TEXT
    );
    CREATE TABLE device_profiles (
        node TEXT NOT NULL,
        device TEXT NOT NULL,
        nozzle_diameter REAL,
        tags TEXT NOT NULL DEFAULT '[]',
        auto_eject INTEGER NOT NULL DEFAULT 0,
        bed_cleared_at TEXT,
        last_print_at TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (node, device)
    );
    CREATE TABLE orders (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        customer TEXT NOT NULL,
        reference TEXT,
        notes TEXT,
        deadline TEXT,
        price REAL,
        stages TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        cancelled_at TEXT
    );
    CREATE TABLE order_items (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id INTEGER NOT NULL REFERENCES orders(id),
        file_sha256 TEXT NOT NULL REFERENCES files(sha256),
        copies INTEGER NOT NULL,
        material TEXT,
        color TEXT,
        deadline TEXT,
        notes TEXT,
        machine_model TEXT,
        quality TEXT,
        slice_job_id INTEGER REFERENCES slice_jobs(id),
        gcode_sha256 TEXT REFERENCES files(sha256),
        quoted_cost REAL,
        quoted_price REAL,
        error TEXT
    );
    CREATE TABLE order_stages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id INTEGER NOT NULL REFERENCES orders(id),
        stage TEXT NOT NULL,
        by TEXT NOT NULL,
        at TEXT NOT NULL,
        notes TEXT
    );
    CREATE TABLE job_requirements (
        job_id INTEGER PRIMARY KEY REFERENCES jobs(id),
        material TEXT,
        color TEXT,
        nozzle_diameter REAL,
        machine_model TEXT,
        sliced_material TEXT,
        mesh INTEGER NOT NULL DEFAULT 0,
        size_x REAL,
        size_y REAL,
        size_z REAL,
        filament_mm REAL,
        tags TEXT NOT NULL DEFAULT '[]',
        deadline TEXT,
        held INTEGER NOT NULL DEFAULT 0,
        rank REAL,
        retries_left INTEGER NOT NULL DEFAULT 0,
        order_item_id INTEGER REFERENCES order_items(id),
        spool_id INTEGER REFERENCES spools(id)
    );
    CREATE INDEX job_requirements_by_item ON job_requirements(order_item_id);
    """,
    # 3: render jobs split into frame-range tasks, each task's failed attempts, and the frames delivered.
    # Preview tasks (kind='preview') render before a job's frame tasks exist; outputs of both are
    # kept apart by `preview`. A frame's bytes live in `files`, like any upload.
    """
    CREATE TABLE render_jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        batch_id TEXT,
        name TEXT NOT NULL,
        blend_sha256 TEXT NOT NULL REFERENCES files(sha256),
        frame_start INTEGER NOT NULL,
        frame_end INTEGER NOT NULL,
        engine TEXT NOT NULL,
        cycles_device TEXT NOT NULL,
        quality TEXT NOT NULL,
        samples INTEGER NOT NULL,
        resolution_pct INTEGER NOT NULL,
        denoise INTEGER NOT NULL,
        file_format TEXT NOT NULL,
        camera TEXT,
        priority INTEGER NOT NULL DEFAULT 0,
        tags TEXT NOT NULL DEFAULT '[]',
        min_vram_mb INTEGER,
        chunk_size INTEGER,
        preview INTEGER NOT NULL,
        max_attempts INTEGER NOT NULL,
        max_node_failures INTEGER NOT NULL,
        timeout_s REAL NOT NULL,
        state TEXT NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        request_key TEXT UNIQUE,
        cancel_requested_at TEXT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT
    );
    CREATE INDEX render_jobs_by_state ON render_jobs(state, priority, id);
    CREATE TABLE render_tasks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id INTEGER NOT NULL REFERENCES render_jobs(id),
        kind TEXT NOT NULL,
        frame_start INTEGER NOT NULL,
        frame_end INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        resolution_pct INTEGER NOT NULL,
        state TEXT NOT NULL,
        node TEXT,
        device TEXT,
        attempt INTEGER NOT NULL DEFAULT 0,
        command_id TEXT,
        ack_deadline TEXT,
        frames_done INTEGER NOT NULL DEFAULT 0,
        render_s REAL NOT NULL DEFAULT 0,
        duration_s REAL,
        error TEXT,
        assigned_at TEXT,
        finished_at TEXT
    );
    CREATE INDEX render_tasks_by_job ON render_tasks(job_id, state);
    CREATE INDEX render_tasks_by_state ON render_tasks(state, node, device);
    CREATE TABLE render_failures (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id INTEGER NOT NULL REFERENCES render_tasks(id),
        job_id INTEGER NOT NULL REFERENCES render_jobs(id),
        attempt INTEGER NOT NULL,
        node TEXT NOT NULL,
        device TEXT NOT NULL,
        reason TEXT NOT NULL,
        counts INTEGER NOT NULL,
        duration_s REAL,
        at TEXT NOT NULL
    );
    CREATE INDEX render_failures_by_job ON render_failures(job_id, node, device);
    CREATE TABLE render_outputs (
        job_id INTEGER NOT NULL REFERENCES render_jobs(id),
        preview INTEGER NOT NULL,
        frame INTEGER NOT NULL,
        task_id INTEGER NOT NULL REFERENCES render_tasks(id),
        sha256 TEXT NOT NULL REFERENCES files(sha256),
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        render_s REAL,
        node TEXT,
        device TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (job_id, preview, frame)
    );
    """,
    # 4: users (argon2 password hashes), API tokens and panel sessions. Tokens and
    # session ids are stored as SHA-256 digests only: they are random, so a slow hash adds nothing.
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at TEXT NOT NULL,
        disabled_at TEXT
    );
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_by TEXT,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        revoked_at TEXT
    );
    CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        csrf TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    """,
    # N: a job's own choice of what happens when its print is cut short (NULL: the farm's).
    """
    ALTER TABLE jobs ADD COLUMN requeue_interrupted INTEGER;
    """,
    # N: the outbound event log (hub/export/). Triggers write each event in the transaction of the change
    # itself, so none is lost and the AUTOINCREMENT id is the commit order; exporters keep their cursors here.
    OUTBOUND_EVENTS_MIGRATION,
    # N (hub/documents): stored quotes and their lines; document_sequences numbers them per year
    # in the transaction that writes the quote, so a refused or rolled-back quote takes no number.
    """
    CREATE TABLE document_sequences (
        kind TEXT NOT NULL,
        year INTEGER NOT NULL,
        last INTEGER NOT NULL,
        PRIMARY KEY (kind, year)
    );
    CREATE TABLE quotes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        number TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL,
        customer TEXT NOT NULL,
        customer_address TEXT NOT NULL DEFAULT '[]',
        reference TEXT,
        notes TEXT,
        currency TEXT NOT NULL,
        vat_pct REAL NOT NULL,
        valid_until TEXT NOT NULL,
        stages TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        sent_at TEXT,
        decided_at TEXT,
        order_id INTEGER REFERENCES orders(id)
    );
    CREATE TABLE quote_lines (
        quote_id INTEGER NOT NULL REFERENCES quotes(id),
        position INTEGER NOT NULL,
        file_sha256 TEXT NOT NULL REFERENCES files(sha256),
        description TEXT NOT NULL,
        copies INTEGER NOT NULL,
        material TEXT NOT NULL,
        color TEXT,
        machine_model TEXT,
        quality TEXT,
        kind TEXT NOT NULL,
        grams REAL NOT NULL,
        hours REAL NOT NULL,
        cost REAL NOT NULL,
        total REAL NOT NULL,
        breakdown TEXT NOT NULL,
        PRIMARY KEY (quote_id, position)
    );
    """,
    # N (hub/alerting): threshold alerts name their rule and severity, are acknowledged by an operator,
    # and are open at most once per (rule, subject); each alert event is delivered once per channel.
    """
    ALTER TABLE alerts ADD COLUMN rule TEXT;
    ALTER TABLE alerts ADD COLUMN severity TEXT NOT NULL DEFAULT 'warning';
    ALTER TABLE alerts ADD COLUMN value REAL;
    ALTER TABLE alerts ADD COLUMN acknowledged_at TEXT;
    ALTER TABLE alerts ADD COLUMN acknowledged_by TEXT;
    CREATE UNIQUE INDEX alerts_open_once ON alerts(rule, subject) WHERE resolved_at IS NULL AND rule IS NOT NULL;
    CREATE TABLE alert_deliveries (
        alert_id INTEGER NOT NULL REFERENCES alerts(id),
        channel TEXT NOT NULL,
        event TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        delivered_at TEXT,
        PRIMARY KEY (alert_id, channel, event)
    );
    """,
)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer hub; refusing to run rather than corrupt it."""


def utcnow() -> str:
    return timestamp(datetime.now(UTC))


def timestamp(moment: datetime) -> str:
    """One fixed ISO 8601 shape, so stored times also sort and compare as text."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class Store:
    def __init__(self, data_dir: Path, migrations: tuple[str, ...] = MIGRATIONS) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DB_NAME
        self.db = Database(self.path)
        self.db.enable_wal()
        # FULL: a message is acknowledged to the broker only after its commit, so
        # the commit must survive a power cut, not only a crash of this process.
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=5000")
        try:
            self.migrate(migrations)
        except BaseException:
            self.db.close()
            raise

    @property
    def schema_version(self) -> int:
        row = self.db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return row[0] or 0

    def migrate(self, migrations: tuple[str, ...]) -> None:
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        current = self.schema_version
        if current > len(migrations):
            raise SchemaTooNew(
                f"{self.path} has schema version {current}; this hub knows up to {len(migrations)}"
            )
        for version, sql in enumerate(migrations[current:], start=current + 1):
            with self.db.atomic():
                self.db.executescript(sql)
                self.db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                                (version, utcnow()))
            log.info("schema_migrated", version=version, db=str(self.path))

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        with self.db.atomic() as db:
            yield db

    def one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        return next(self.db.query(sql, params), None)

    def all(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))

    def close(self) -> None:
        self.db.close()
