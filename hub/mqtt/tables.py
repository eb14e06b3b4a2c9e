"""The command outbox and every event the agents sent (unique on sender and seq: replays apply once)."""

from __future__ import annotations

from hub.component import Tables

TABLES = (
    Tables(1, """
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
    """),
)

# Schema version 7 (6 is the export's outbound log). Each node's confirmed high-water mark (hub/mqtt/confirm.py): every event up to seq is stored.
TABLES += (
    Tables(9, """
    CREATE TABLE event_marks (
        node TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );
    """),
)
