"""Uploaded files (their bytes live under data_dir/files) and their analyses."""

from __future__ import annotations

from hub.component import Tables

TABLES = (
    Tables(1, """
    CREATE TABLE files (
        sha256 TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    """),
    Tables(2, """
    CREATE TABLE file_analyses (
        sha256 TEXT PRIMARY KEY REFERENCES files(sha256),
        kind TEXT NOT NULL,
        ok INTEGER NOT NULL,
        error TEXT,
        body TEXT,
        analyzed_at TEXT NOT NULL
    );
    """),
)
