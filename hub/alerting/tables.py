"""Threshold alerts on the alerts table (owned by ops): their rule, severity and who acknowledged them,
open at most once per (rule, subject); each alert event is delivered once per channel.
"""

from __future__ import annotations

from hub.component import Tables

TABLES = (
    Tables(8, """
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
    """),
)
