"""Print jobs and what each needs of a printer."""

from __future__ import annotations

from hub.component import Tables

TABLES = (
    # jobs.request_key makes a retried submission (same key) return the first job.
    Tables(1, """
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
    """),
    # job_requirements is kept beside jobs so a job without a row has no constraints.
    Tables(2, """
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
    """),
    # A job's own choice of what happens when its print is cut short (NULL: the farm's).
    Tables(5, """
    ALTER TABLE jobs ADD COLUMN requeue_interrupted INTEGER;
    """),
)
