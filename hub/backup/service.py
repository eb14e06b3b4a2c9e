"""``Backups``: backups of the running hub — on request over HTTP (admin only) and on a schedule with retention.

Disk work runs in a thread so the hub keeps serving; one backup at a time. The component also holds the
data directory's lock while the hub runs, which is what makes `farmhand backup restore` refuse a live hub.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from pathlib import Path

import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from hub.api import ApiProblem, Items, Op, RouteTable, body, respond
from hub.clock import Clock
from hub.component import Component
from hub.files import FileStore
from hub.store import DB_NAME, Store
from hub.tasks import stop_tasks

from .archive import BackupArchive, BackupError, Manifest
from .restore import HubLock, restore, verify
from .schedule import BackupConfig, keep, next_run

log = structlog.get_logger("farmhand.hub.backup")


class BackupInfo(BaseModel):
    id: str
    created_at: str
    hub_id: str
    kind: str = Field(description="manual or scheduled")
    schema_version: int
    files: int
    missing_files: int = Field(description="files the database named that were not on disk when it ran")
    new_objects: int = Field(description="objects this backup added (the rest were already stored)")
    stored_bytes: int
    verified: bool | None = Field(description="the last verification's verdict; None: not verified yet")
    verify_reason: str | None = None


class RestoreRequest(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                      description="restore into <backup dir>/restores/<name>, a fresh directory; a hub's own "
                                  "directory is restored with `farmhand backup restore` while it is stopped")


class RestoreResult(BaseModel):
    backup_id: str
    data_dir: str
    files_written: int
    files_present: int


def backup_dir(config: BackupConfig, data_dir: Path) -> Path:
    return config.dir or data_dir / "backups"


def describe(archive: BackupArchive, manifest: Manifest) -> BackupInfo:
    verdict = archive.verdict(manifest.id) or {}
    return BackupInfo(id=manifest.id, created_at=manifest.created_at, hub_id=manifest.hub_id, kind=manifest.kind,
                      schema_version=manifest.schema_version, files=len(manifest.files),
                      missing_files=len(manifest.missing_files), new_objects=manifest.new_objects,
                      stored_bytes=manifest.stored_bytes, verified=verdict.get("ok"), verify_reason=verdict.get("reason"))


def apply_retention(archive: BackupArchive, config: BackupConfig) -> list[str]:
    """Delete the scheduled backups retention does not keep (and objects nothing needs); the ids deleted."""
    scheduled = {}
    for backup_id in archive.ids():
        with contextlib.suppress(BackupError):
            manifest = archive.load(backup_id)
            if manifest.kind == "scheduled":
                scheduled[backup_id] = datetime.fromisoformat(manifest.created_at)
    kept = keep(scheduled, config.keep_daily, config.keep_weekly)
    gone = sorted(set(scheduled) - kept)
    for backup_id in gone:
        archive.delete(backup_id)
    if gone:
        archive.collect_garbage()
        log.info("backup_retention", deleted=gone, kept=sorted(kept))
    return gone


class Backups(Component):
    name = "backups"

    def __init__(self, store: Store, files: FileStore, config: BackupConfig, data_dir: Path, hub_id: str,
                 clock: Clock) -> None:
        self.store = store
        self.files = files
        self.config = config
        self.data_dir = data_dir
        self.hub_id = hub_id
        self.clock = clock  # scheduled backups run at its time of day; every backup is stamped with its now()
        self.archive = BackupArchive(backup_dir(config, data_dir), config.compress_level)
        self.lock = HubLock(data_dir)
        self._busy = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self.lock.acquire():
            log.warning("hub_lock_held", data_dir=str(self.data_dir),
                        note="another process holds the data directory's lock (a restore, or a second hub?)")
        if self.config.schedule:
            self._task = asyncio.create_task(self._scheduled(), name="hub:backup-schedule")

    async def stop(self) -> None:
        await stop_tasks(self._task)
        self._task = None
        self.lock.release()

    async def create(self, kind: str = "manual") -> Manifest:
        async with self._busy:
            return await asyncio.to_thread(self.archive.create, self.store.path.parent / DB_NAME, self.files.root,
                                           self.hub_id, kind, self.clock.now())

    async def _scheduled(self) -> None:
        assert self.config.schedule is not None
        while True:
            # From the time now, not from the last due time: a hub that was down (or a backup that ran long)
            # takes the next one at its time instead of catching up on the ones it missed.
            await self.clock.sleep_until(next_run(self.config.schedule, self.clock.now()))
            try:
                await self.create("scheduled")
                await asyncio.to_thread(apply_retention, self.archive, self.config)
            except Exception:
                log.exception("scheduled_backup_failed")

    # ------------------------------------------------------------------ HTTP

    def ops(self) -> list[Op]:
        t, base, tags = RouteTable(), "/api/v1/backups", ("backups",)
        t.add("GET", base, self.list, response=Items[BackupInfo], tags=tags, summary="Backups, oldest first")
        t.add("POST", base, self.create_now, response=BackupInfo, status=201, tags=tags,
              summary="Back up the database and the file store now")
        t.add("GET", base + "/{id}", self.get, response=BackupInfo, tags=tags, summary="One backup")
        t.add("POST", base + "/{id}/verify", self.verify, response=BackupInfo, tags=tags,
              summary="Re-hash every part and check the database (422 with the reason when it fails)")
        t.add("POST", base + "/{id}/restore", self.restore_copy, body=RestoreRequest, response=RestoreResult,
              tags=tags, summary="Restore into a fresh directory beside the backups (to inspect, or to start a "
                                 "second hub on); a live hub is restored with the CLI, stopped")
        return t.ops

    def _load(self, request: web.Request) -> Manifest:
        try:
            return self.archive.load(request.match_info["id"])
        except BackupError as exc:
            raise ApiProblem(404, "Backup not found", str(exc)) from None

    async def list(self, request: web.Request) -> web.Response:
        infos = []
        for backup_id in self.archive.ids():
            with contextlib.suppress(BackupError):
                infos.append(describe(self.archive, self.archive.load(backup_id)))
        return respond(Items[BackupInfo](items=infos))

    async def create_now(self, request: web.Request) -> web.Response:
        return respond(describe(self.archive, await self.create()), 201)

    async def get(self, request: web.Request) -> web.Response:
        return respond(describe(self.archive, self._load(request)))

    async def verify(self, request: web.Request) -> web.Response:
        manifest = self._load(request)
        try:
            await asyncio.to_thread(verify, self.archive, manifest.id)
        except BackupError as exc:
            raise ApiProblem(422, "Backup failed verification", str(exc)) from None
        return respond(describe(self.archive, manifest))

    async def restore_copy(self, request: web.Request) -> web.Response:
        manifest = self._load(request)
        spec = await body(request, RestoreRequest, "Invalid restore")
        target = self.archive.root / "restores" / spec.name
        if target.exists():
            raise ApiProblem(409, "Restore target not fresh", f"{target} exists; pick another name")
        try:
            done = await asyncio.to_thread(restore, self.archive, manifest.id, target)
        except BackupError as exc:
            raise ApiProblem(422, "Backup not restored", str(exc)) from None
        return respond(RestoreResult(backup_id=done.backup_id, data_dir=str(done.data_dir),
                                     files_written=done.files_written, files_present=done.files_present))
