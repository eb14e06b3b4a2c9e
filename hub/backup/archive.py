"""Backups on disk: a manifest per backup and a shared, content-addressed store of compressed objects.

    <dir>/objects/<sha[:2]>/<sha>.gz     gzip of the bytes whose SHA-256 is <sha> (the database, each file)
    <dir>/<id>/manifest.json             what the backup holds, each part by hash; hashed itself
    <dir>/<id>/verified.json             the last verification's verdict

A file the store already holds (same hash) is not copied again, so a daily backup costs the database plus
the files uploaded since. The database is copied with SQLite's online backup API from its own connection:
one read transaction, so the copy is the database as of one commit while the hub keeps writing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from hub.store import DB_NAME, timestamp

log = structlog.get_logger("farmhand.hub.backup")

FORMAT = "farmhand-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VERDICT = "verified.json"
CHUNK = 1 << 20


class BackupError(Exception):
    """A backup that cannot be used; the message says why in an operator's words."""


@dataclass
class Part:
    sha256: str
    size: int
    name: str = ""


@dataclass
class Manifest:
    id: str
    created_at: str
    hub_id: str
    kind: str  # manual or scheduled
    schema_version: int
    database: Part
    files: list[Part] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    new_objects: int = 0
    stored_bytes: int = 0

    def body(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "id": self.id, "created_at": self.created_at,
                "hub_id": self.hub_id, "kind": self.kind, "schema_version": self.schema_version,
                "database": vars(self.database), "files": [vars(f) for f in self.files],
                "missing_files": self.missing_files, "new_objects": self.new_objects,
                "stored_bytes": self.stored_bytes}

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Manifest:
        return cls(id=raw["id"], created_at=raw["created_at"], hub_id=raw["hub_id"], kind=raw["kind"],
                   schema_version=raw["schema_version"], database=Part(**raw["database"]),
                   files=[Part(**f) for f in raw["files"]], missing_files=raw.get("missing_files", []),
                   new_objects=raw.get("new_objects", 0), stored_bytes=raw.get("stored_bytes", 0))


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class BackupArchive:
    """The backup directory. Methods are blocking (disk work): the hub calls them in a thread."""

    def __init__(self, root: Path, compress_level: int = 6) -> None:
        self.root = root
        self.objects = root / "objects"
        self.compress_level = compress_level

    # ------------------------------------------------------------------ objects

    def object_path(self, sha256: str) -> Path:
        return self.objects / sha256[:2] / f"{sha256}.gz"

    def _put(self, source: Path, known_sha: str | None = None) -> tuple[Part, bool]:
        """Store ``source`` compressed under its hash; (its part, whether it was new)."""
        if known_sha is not None and self.object_path(known_sha).exists():
            return Part(known_sha, source.stat().st_size), False
        self.objects.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.objects, prefix=".incoming-")
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=self.compress_level,
                                                           mtime=0) as out, open(source, "rb") as src:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            sha = digest.hexdigest()
            target = self.object_path(sha)
            if target.exists():
                return Part(sha, size), False
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, target)
            return Part(sha, size), True
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)

    def read_object(self, sha256: str, into: Path) -> None:
        """Decompress an object to ``into``, checking its hash; ``BackupError`` naming the object otherwise."""
        path = self.object_path(sha256)
        if not path.exists():
            raise BackupError(f"object {sha256[:12]}… is missing from {self.objects}")
        digest = hashlib.sha256()
        try:
            with gzip.open(path, "rb") as src, open(into, "wb") as out:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise BackupError(f"object {sha256[:12]}… is damaged: {exc}") from None
        if digest.hexdigest() != sha256:
            raise BackupError(f"object {sha256[:12]}… does not hash to its name: its bytes changed")

    # ------------------------------------------------------------------ backups

    def create(self, db_path: Path, files_root: Path, hub_id: str, kind: str = "manual",
               now: datetime | None = None) -> Manifest:
        moment = now or datetime.now(UTC)
        backup_id = f"{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".snapshot-") as tmp:
            snapshot = Path(tmp) / DB_NAME
            source = sqlite3.connect(db_path)
            target = sqlite3.connect(snapshot)
            try:
                source.backup(target)  # one step: a single read transaction, one commit's view
                schema = target.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
                rows = target.execute("SELECT sha256, name FROM files ORDER BY sha256").fetchall()
            finally:
                target.close()
                source.close()
            database, new = self._put(snapshot)
            manifest = Manifest(backup_id, timestamp(moment), hub_id, kind, schema, database,
                                new_objects=int(new), stored_bytes=database.size if new else 0)
        for sha, name in rows:
            path = files_root / sha[:2] / sha
            if not path.exists():
                manifest.missing_files.append(sha)
                continue
            part, new = self._put(path, known_sha=sha)
            manifest.files.append(Part(part.sha256, part.size, name))
            manifest.new_objects += int(new)
            manifest.stored_bytes += part.size if new else 0
        self._save(manifest)
        log.info("backup_created", id=backup_id, kind=kind, files=len(manifest.files),
                 new_objects=manifest.new_objects, missing_files=len(manifest.missing_files))
        return manifest

    def _save(self, manifest: Manifest) -> None:
        body = manifest.body()
        folder = self.root / manifest.id
        folder.mkdir(parents=True)
        _write_atomic(folder / MANIFEST, json.dumps({**body, "sha256": _digest(body)}, indent=1).encode())

    def load(self, backup_id: str) -> Manifest:
        """The manifest, checked to be ours and unaltered; ``BackupError`` with the reason otherwise."""
        if "/" in backup_id or backup_id.startswith(".") or backup_id == "objects":
            raise BackupError(f"{backup_id!r} is not a backup id")
        path = self.root / backup_id / MANIFEST
        if not path.exists():
            raise BackupError(f"no backup {backup_id!r} in {self.root}")
        try:
            raw = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError) as exc:
            raise BackupError(f"backup {backup_id}: its manifest is not readable JSON ({exc})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise BackupError(f"backup {backup_id}: not a Farmhand backup (format {raw.get('format')!r})"
                              if isinstance(raw, dict) else f"backup {backup_id}: not a Farmhand backup")
        if raw.get("format_version") != FORMAT_VERSION:
            raise BackupError(f"backup {backup_id}: format version {raw.get('format_version')} is not one this "
                              f"hub reads ({FORMAT_VERSION})")
        claimed = raw.pop("sha256", None)
        if claimed != _digest(raw):
            raise BackupError(f"backup {backup_id}: its manifest was altered (hash mismatch)")
        return Manifest.parse(raw)

    def ids(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / MANIFEST).exists())

    def verdict(self, backup_id: str) -> dict[str, Any] | None:
        path = self.root / backup_id / VERDICT
        return json.loads(path.read_text()) if path.exists() else None

    def record_verdict(self, backup_id: str, ok: bool, reason: str) -> dict[str, Any]:
        verdict = {"ok": ok, "reason": reason, "at": timestamp(datetime.now(UTC))}
        if (self.root / backup_id).is_dir():
            _write_atomic(self.root / backup_id / VERDICT, json.dumps(verdict).encode())
        return verdict

    def delete(self, backup_id: str) -> None:
        self.load(backup_id)
        shutil.rmtree(self.root / backup_id)

    def collect_garbage(self) -> int:
        """Delete objects no remaining backup refers to; how many went."""
        live: set[str] = set()
        for backup_id in self.ids():
            try:
                manifest = self.load(backup_id)
            except BackupError:
                return 0  # a manifest we cannot read might need any object: delete nothing
            live.add(manifest.database.sha256)
            live.update(f.sha256 for f in manifest.files)
        gone = 0
        for path in self.objects.glob("*/*.gz") if self.objects.exists() else []:
            if path.name.removesuffix(".gz") not in live:
                path.unlink()
                gone += 1
        return gone
