"""Operators' alerts."""

from __future__ import annotations

from hub.component import Tables

TABLES = (
    Tables(2, """
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at TEXT NOT NULL,
        resolved_at TEXT
    );
    """),
)
