"""Checking a backup (every object re-hashed, the database's own integrity check) and restoring one.

A backup that fails verification is marked failed and never restored. Restore writes into a stopped hub's
data directory (the running hub holds ``hub.lock``) or a fresh one; the database it replaces is kept
beside it as ``hub.db.before-restore-<time>``, never deleted.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from hub.store import DB_NAME

from .archive import BackupArchive, BackupError, Manifest

log = structlog.get_logger("farmhand.hub.backup")

LOCK_NAME = "hub.lock"


@dataclass(frozen=True)
class Restored:
    backup_id: str
    data_dir: Path
    files_written: int
    files_present: int
    previous_database: Path | None


class HubLock:
    """Held by a running hub on its data directory, so a restore cannot pull the database from under it."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def verify(archive: BackupArchive, backup_id: str) -> Manifest:
    """Re-hash every part and run ``PRAGMA integrity_check``; the verdict is recorded either way."""
    try:
        manifest = archive.load(backup_id)
        with tempfile.TemporaryDirectory(dir=archive.root, prefix=".verify-") as tmp:
            db = Path(tmp) / DB_NAME
            archive.read_object(manifest.database.sha256, db)
            _check_database(db)
            scratch = Path(tmp) / "file"
            for part in manifest.files:
                archive.read_object(part.sha256, scratch)
                if scratch.stat().st_size != part.size:
                    raise BackupError(f"file {part.name!r} is {scratch.stat().st_size} bytes, not {part.size}")
    except BackupError as exc:
        archive.record_verdict(backup_id, False, str(exc))
        log.warning("backup_verify_failed", id=backup_id, reason=str(exc))
        raise
    archive.record_verdict(backup_id, True, f"{len(manifest.files)} files and the database check out")
    return manifest


def _check_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the database copy is not a usable SQLite database: {exc}") from None
    finally:
        conn.close()
    if result != ["ok"]:
        raise BackupError(f"the database copy fails SQLite's integrity check: {'; '.join(result[:3])}")


def restore(archive: BackupArchive, backup_id: str, data_dir: Path, hub_id: str | None = None) -> Restored:
    """Put the backup's database and files into ``data_dir``; refuses with ``BackupError`` saying why.

    ``hub_id``: the hub the directory belongs to; a backup of another hub is refused (None: any hub).
    """
    manifest = archive.load(backup_id)
    if hub_id is not None and manifest.hub_id != hub_id:
        raise BackupError(f"backup {backup_id} is of hub {manifest.hub_id!r}, not {hub_id!r} "
                          "(restore it with --hub-id to take it anyway)")
    from hub.schema import MIGRATIONS  # late: the schema collects every component's tables, this one's too

    if manifest.schema_version > len(MIGRATIONS):
        raise BackupError(f"backup {backup_id} has schema version {manifest.schema_version}; this hub knows up to "
                          f"{len(MIGRATIONS)}: restore it with a newer Farmhand")
    lock = HubLock(data_dir)
    if not lock.acquire():
        raise BackupError(f"a hub is running on {data_dir}: stop it before restoring into it")
    try:
        verify(archive, backup_id)
        return _restore_into(archive, manifest, data_dir)
    finally:
        lock.release()


def _restore_into(archive: BackupArchive, manifest: Manifest, data_dir: Path) -> Restored:
    files_root = data_dir / "files"
    written = present = 0
    for part in manifest.files:
        target = files_root / part.sha256[:2] / part.sha256
        if target.exists() and target.stat().st_size == part.size:
            present += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.restore")
        archive.read_object(part.sha256, tmp)
        os.replace(tmp, target)
        written += 1
    incoming = data_dir / f".{DB_NAME}.restore"
    archive.read_object(manifest.database.sha256, incoming)
    db = data_dir / DB_NAME
    previous = None
    if db.exists():
        previous = data_dir / f"{DB_NAME}.before-restore-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
        # Fold the WAL into the old database first, so the file kept aside is whole on its own.
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        os.replace(db, previous)
    for suffix in ("-wal", "-shm"):
        (data_dir / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
    os.replace(incoming, db)
    log.info("backup_restored", id=manifest.id, data_dir=str(data_dir), files_written=written,
             files_present=present, previous=str(previous) if previous else None)
    return Restored(manifest.id, data_dir, written, present, previous)
