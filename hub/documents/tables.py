"""The documents' tables: stored quotes, their lines, and the per-year sequence that numbers them.

document_sequences numbers quotes in the transaction that writes the quote, so a refused or
rolled-back quote takes no number.
"""

from __future__ import annotations

from hub.component import Tables

TABLES = (
    Tables(7, """
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
    """),
)
