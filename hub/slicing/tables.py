"""Slicing profiles uploaded to the hub and slice jobs."""

from __future__ import annotations

from hub.component import Tables

TABLES = (
    Tables(2, """
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
    """),
)
