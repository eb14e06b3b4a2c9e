"""Render jobs split into frame-range tasks, each task's failed attempts, and the frames delivered."""

from __future__ import annotations

from hub.component import Tables

TABLES = (
    # Preview tasks (kind='preview') render before a job's frame tasks exist; outputs of both are kept apart by `preview`. A frame's bytes live in `files`, like any upload.
    Tables(3, """
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
    """),
)
