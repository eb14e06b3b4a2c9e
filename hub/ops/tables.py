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
    # A module's alert (low stock, an unknown job) is open at most once for the same thing, as a threshold
    # rule's is (alerts_open_once): a node born twice reports its unknown job twice. Duplicates opened
    # before this version are closed first, as of when they were raised.
    Tables(10, """
    UPDATE alerts SET resolved_at = created_at
     WHERE rule IS NULL AND resolved_at IS NULL AND id NOT IN (
           SELECT MIN(id) FROM alerts WHERE rule IS NULL AND resolved_at IS NULL GROUP BY kind, subject, message);
    CREATE UNIQUE INDEX alerts_raised_once ON alerts(kind, subject, message) WHERE resolved_at IS NULL AND rule IS NULL;
    """),
)
