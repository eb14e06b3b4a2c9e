"""Nodes and devices as their agents describe them, telemetry history, device profiles."""

from __future__ import annotations

from hub.component import Tables

TABLES = (
    Tables(1, """
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
    CREATE TABLE telemetry (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        node TEXT NOT NULL,
        device TEXT NOT NULL,
        ts TEXT NOT NULL,
        temperatures TEXT NOT NULL,
        progress REAL
    );
    CREATE INDEX telemetry_by_device ON telemetry(node, device, ts);
    """),
    Tables(2, """
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
    """),
)
