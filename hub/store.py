"""The hub's SQLite database: one file, WAL, numbered migrations (each component declares its own
tables; ``hub.schema`` puts them together by version).

Every other hub module reads and writes through ``Store.db`` (a sqlite-utils
``Database``) on the event loop's thread, so there is exactly one writer and a
transaction never interleaves with another. Statements are short; the slowest
path (an event plus its job update) is one small transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlite_utils import Database

log = structlog.get_logger("farmhand.hub.store")

DB_NAME = "hub.db"

class SchemaTooNew(RuntimeError):
    """The database was written by a newer hub; refusing to run rather than corrupt it."""


def utcnow() -> str:
    return timestamp(datetime.now(UTC))


def timestamp(moment: datetime) -> str:
    """One fixed ISO 8601 shape, so stored times also sort and compare as text.

    ``moment.astimezone(UTC).isoformat(timespec="milliseconds")``, the same text, made faster: every
    event the hub stores takes one (its envelope's time), and a burst's times share their seconds, so the
    text up to the second is formatted once per second (``_SECONDS``) and only the milliseconds each time.
    """
    try:
        since = moment - _EPOCH  # exact: days, seconds and microseconds, whatever the moment's offset
    except TypeError:  # a naive moment: local time, as astimezone takes it
        return moment.astimezone(UTC).isoformat(timespec="milliseconds")
    whole = since.days * 86_400 + since.seconds
    second = _SECONDS.get(whole)
    if second is None:
        if len(_SECONDS) >= _SECONDS_KEPT:
            _SECONDS.clear()
        second = _SECONDS[whole] = (_EPOCH + timedelta(seconds=whole)).isoformat()[:19]
    return f"{second}.{since.microseconds // 1000:03d}+00:00"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECONDS: dict[int, str] = {}  # seconds since the epoch -> "YYYY-MM-DDTHH:MM:SS" in UTC
_SECONDS_KEPT = 4096


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class Store:
    def __init__(self, data_dir: Path, migrations: tuple[str, ...] | None = None) -> None:
        """``migrations``: SQL by schema version (index 0 is version 1); default: the hub's, every component's
        tables (``hub.schema``)."""
        if migrations is None:
            from hub.schema import MIGRATIONS  # the components' tables; imported late, they import the store

            migrations = MIGRATIONS
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DB_NAME
        self.db = Database(self.path)
        self.db.enable_wal()
        # FULL: a message is acknowledged to the broker only after its commit, so
        # the commit must survive a power cut, not only a crash of this process.
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=5000")
        try:
            self.migrate(migrations)
        except BaseException:
            self.db.close()
            raise

    @property
    def schema_version(self) -> int:
        row = self.db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return row[0] or 0

    def migrate(self, migrations: tuple[str, ...]) -> None:
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        current = self.schema_version
        if current > len(migrations):
            raise SchemaTooNew(
                f"{self.path} has schema version {current}; this hub knows up to {len(migrations)}"
            )
        for version, sql in enumerate(migrations[current:], start=current + 1):
            with self.db.atomic():
                self.db.executescript(sql)
                self.db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                                (version, utcnow()))
            log.info("schema_migrated", version=version, db=str(self.path))

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        with self.db.atomic() as db:
            yield db

    def one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        return next(self.db.query(sql, params), None)

    def all(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))

    def close(self) -> None:
        self.db.close()
