"""The cost model (settings), filament stock (Spoolman's vendor/filament/spool names), orders."""

from __future__ import annotations

from hub.component import Tables

TABLES = (
    Tables(2, """
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE vendors (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        comment TEXT,
        registered TEXT NOT NULL
    );
    CREATE TABLE filaments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        vendor_id INTEGER REFERENCES vendors(id),
        name TEXT,
        material TEXT NOT NULL,
        color_hex TEXT,
        density REAL NOT NULL,
        diameter REAL NOT NULL,
        price REAL,
        weight REAL,
        spool_weight REAL,
        comment TEXT,
        registered TEXT NOT NULL
    );
    CREATE TABLE spools (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        filament_id INTEGER NOT NULL REFERENCES filaments(id),
        initial_weight REAL NOT NULL,
        used_weight REAL NOT NULL DEFAULT 0,
        price REAL,
        lot_nr TEXT,
        location TEXT,
        comment TEXT,
        archived INTEGER NOT NULL DEFAULT 0,
        node TEXT,
        device TEXT,
        low_alerted INTEGER NOT NULL DEFAULT 0,
        registered TEXT NOT NULL,
        first_used TEXT,
        last_used TEXT
    );
    CREATE UNIQUE INDEX spools_loaded ON spools(node, device) WHERE node IS NOT NULL;
    CREATE TABLE spool_usage (
        job_id INTEGER NOT NULL REFERENCES jobs(id),
        attempt INTEGER NOT NULL,
        spool_id INTEGER REFERENCES spools(id),
        grams REAL NOT NULL,
        booked_at TEXT NOT NULL,
        PRIMARY KEY (job_id, attempt)
    );
    CREATE TABLE orders (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        customer TEXT NOT NULL,
        reference TEXT,
        notes TEXT,
        deadline TEXT,
        price REAL,
        stages TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        cancelled_at TEXT
    );
    CREATE TABLE order_items (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id INTEGER NOT NULL REFERENCES orders(id),
        file_sha256 TEXT NOT NULL REFERENCES files(sha256),
        copies INTEGER NOT NULL,
        material TEXT,
        color TEXT,
        deadline TEXT,
        notes TEXT,
        machine_model TEXT,
        quality TEXT,
        slice_job_id INTEGER REFERENCES slice_jobs(id),
        gcode_sha256 TEXT REFERENCES files(sha256),
        quoted_cost REAL,
        quoted_price REAL,
        error TEXT
    );
    CREATE TABLE order_stages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id INTEGER NOT NULL REFERENCES orders(id),
        stage TEXT NOT NULL,
        by TEXT NOT NULL,
        at TEXT NOT NULL,
        notes TEXT
    );
    """),
)
