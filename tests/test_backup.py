"""Backups of a live hub: taken while jobs arrive, verified, refused when damaged or foreign, restored, retained."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from farmhand import export_cli
from farmhand.cli import _parser
from hub.backup.archive import BackupArchive, BackupError
from hub.backup.restore import restore, verify
from hub.backup.schedule import BackupConfig, next_run
from hub.backup.service import apply_retention
from hub.store import Store

from .hubkit import Farm, Http, hub_config, isolated_farm  # noqa: F401 - fixture

pytestmark = pytest.mark.integration


async def snapshot_of(http: Http) -> dict[str, object]:
    """What a user sees of the hub: jobs, orders, stock and files (with their bytes)."""
    async def get(path: str) -> object:
        status, body = await http.call("GET", path, params={"limit": 1000})
        assert status == 200, body
        return body["items"]
    files = await get("/api/v1/files")
    contents = {f["sha256"]: (await http.call("GET", f"/api/v1/files/{f['sha256']}"))[1] for f in files}
    return {"jobs": await get("/api/v1/jobs"), "orders": await get("/api/v1/orders"),
            "spools": await get("/api/v1/spools"), "files": files, "contents": contents}


async def test_a_backup_taken_while_jobs_arrive_restores_to_a_hub_that_answers_the_same(
        isolated_farm: Farm, tmp_path: Path) -> None:
    hub = await isolated_farm.hub()
    http = isolated_farm.http(hub)
    vendor = (await http.call("POST", "/api/v1/vendors", json={"name": "Prusament"}))[1]
    filament = (await http.call("POST", "/api/v1/filaments", json={
        "vendor_id": vendor["id"], "material": "PLA", "density": 1.24, "weight": 1000}))[1]
    await http.call("POST", "/api/v1/spools", json={"filament_id": filament["id"], "initial_weight": 750})
    sha = await http.upload(b"G28\nG1 X1\n", "first.gcode")
    assert (await http.call("POST", "/api/v1/orders", json={"customer": "Acme", "items": [{"file_sha256": sha}]}))[0] \
        == 201

    stop = asyncio.Event()

    async def keep_submitting() -> int:
        n = 0
        while not stop.is_set():
            n += 1
            await http.submit(await http.upload(f"G28\nG1 X{n}\n".encode(), f"part{n}.gcode"))
        return n

    submitter = asyncio.create_task(keep_submitting())
    await asyncio.sleep(0.5)
    status, made = await http.call("POST", "/api/v1/backups")
    stop.set()
    submitted = await submitter
    assert status == 201, made
    assert made["kind"] == "manual" and made["files"] >= 2 and made["missing_files"] == 0

    status, checked = await http.call("POST", f"/api/v1/backups/{made['id']}/verify")
    assert status == 200 and checked["verified"] is True
    assert [b["id"] for b in (await http.call("GET", "/api/v1/backups"))[1]["items"]] == [made["id"]]
    # Unchanged files are not stored again: a second backup adds the database and nothing else.
    second = (await http.call("POST", "/api/v1/backups"))[1]
    assert second["new_objects"] == 1 + second["files"] - made["files"]  # the database and later uploads only
    viewer = isolated_farm.http(hub, role="operator")
    assert (await viewer.call("GET", "/api/v1/backups"))[0] == 403

    status, done = await http.call("POST", f"/api/v1/backups/{made['id']}/restore", json={"name": "copy"})
    assert status == 200 and done["files_written"] == made["files"]
    target = Path(done["data_dir"])
    assert target == hub.config.data_dir / "backups" / "restores" / "copy"
    assert (await http.call("POST", f"/api/v1/backups/{made['id']}/restore", json={"name": "copy"}))[0] == 409
    assert (await http.call("POST", f"/api/v1/backups/{made['id']}/restore", json={"name": "../up"}))[0] == 422
    live = await snapshot_of(http)

    # The restored hub: the jobs that existed when the backup ran, and everything else as it was.
    from hub.app import Hub
    restored = Hub(hub_config(target, None, hub_id=hub.config.hub_id))
    await restored.start()
    try:
        again = await snapshot_of(isolated_farm.http(restored))
    finally:
        await restored.stop()
    kept = len(again["jobs"])
    assert 1 <= kept <= submitted and again["jobs"] == live["jobs"][:kept]
    assert again["orders"] == live["orders"] and again["spools"] == live["spools"]
    assert {f["sha256"] for f in again["files"]} <= {f["sha256"] for f in live["files"]}
    assert all(again["contents"][sha] == live["contents"][sha] for sha in again["contents"])
    assert {j["file_sha256"] for j in again["jobs"]} <= set(again["contents"])  # every job's file came back


def damaged_backup(tmp_path: Path) -> tuple[BackupArchive, str, Path]:
    data = tmp_path / "hub"
    store = Store(data)
    (data / "files" / "ab").mkdir(parents=True)
    sha = "ab" + "0" * 62
    (data / "files" / "ab" / sha).write_bytes(b"G28\n" * 1000)
    store.db.execute("INSERT INTO files VALUES (?, 'part.gcode', 4000, 'now')", (sha,))
    store.close()
    archive = BackupArchive(tmp_path / "backups")
    manifest = archive.create(data / "hub.db", data / "files", "farm-1")
    return archive, manifest.id, archive.object_path(manifest.files[0].sha256)


def flip_byte(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("where", ["file", "database"])
def test_one_flipped_byte_fails_verify_and_restore(tmp_path: Path, where: str) -> None:
    archive, backup_id, file_object = damaged_backup(tmp_path)
    verify(archive, backup_id)  # whole, it checks out
    damaged = file_object if where == "file" else archive.object_path(archive.load(backup_id).database.sha256)
    flip_byte(damaged, damaged.stat().st_size // 2)
    with pytest.raises(BackupError, match="damaged|does not hash"):
        verify(archive, backup_id)
    assert archive.verdict(backup_id)["ok"] is False
    with pytest.raises(BackupError, match="damaged|does not hash"):
        restore(archive, backup_id, tmp_path / "fresh")
    assert not (tmp_path / "fresh" / "hub.db").exists()


def test_a_foreign_or_altered_backup_or_a_running_hub_is_refused(tmp_path: Path) -> None:
    archive, backup_id, _ = damaged_backup(tmp_path)
    with pytest.raises(BackupError, match="is of hub 'farm-1', not 'farm-2'"):
        restore(archive, backup_id, tmp_path / "fresh", hub_id="farm-2")
    manifest = tmp_path / "backups" / backup_id / "manifest.json"
    body = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**body, "hub_id": "farm-2"}))
    with pytest.raises(BackupError, match="altered"):
        restore(archive, backup_id, tmp_path / "fresh")
    manifest.write_text(json.dumps({**body, "format": "tarball"}))
    with pytest.raises(BackupError, match="not a Farmhand backup"):
        restore(archive, backup_id, tmp_path / "fresh")
    manifest.write_text(json.dumps(body))
    from hub.backup.restore import HubLock
    running = HubLock(tmp_path / "hub")
    assert running.acquire()
    try:
        with pytest.raises(BackupError, match="a hub is running"):
            restore(archive, backup_id, tmp_path / "hub")
    finally:
        running.release()
    done = restore(archive, backup_id, tmp_path / "hub")  # stopped: the old database is kept aside
    assert done.previous_database is not None and done.previous_database.exists()


def test_retention_keeps_exactly_the_newest_daily_and_weekly_backups(tmp_path: Path) -> None:
    archive, manual, _ = damaged_backup(tmp_path)
    data = tmp_path / "hub"
    start = datetime(2030, 1, 1, 2, 0, tzinfo=UTC)  # a Tuesday
    made = {}
    for day in range(21):  # two a day for three weeks
        for hour in (0, 12):
            moment = start + timedelta(days=day, hours=hour)
            made[moment] = archive.create(data / "hub.db", data / "files", "farm-1", "scheduled", now=moment).id
    gone = apply_retention(archive, BackupConfig(keep_daily=3, keep_weekly=3))
    # Days: the newest of Jan 21, 20 and 19. ISO weeks (Monday first): the newest of the weeks of Jan 21
    # (a Monday: itself), of Jan 14-20 (Jan 20) and of Jan 7-13 (Jan 13).
    expected = {made[start + timedelta(days=d, hours=12)] for d in (20, 19, 18, 12)}
    assert set(archive.ids()) == expected | {manual}  # a manual backup is never retired
    assert len(gone) == 42 - 4
    for backup_id in archive.ids():
        verify(archive, backup_id)  # garbage collection left every object a kept backup needs


def test_schedule_names_the_next_daily_time() -> None:
    assert next_run("daily 02:00", datetime(2030, 1, 1, 1, 0, tzinfo=UTC)) == datetime(2030, 1, 1, 2, 0, tzinfo=UTC)
    assert next_run("daily 02:00", datetime(2030, 1, 1, 2, 0, tzinfo=UTC)) == datetime(2030, 1, 2, 2, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="daily HH:MM"):
        BackupConfig(schedule="every night")


class SteppedClock:
    """A wall clock the test moves. The hub's schedule sleeps until the moment it asks for; the test reads
    that moment (``next_wake``: once the schedule sleeps again, its work before done) and steps the clock."""

    def __init__(self, start: datetime) -> None:
        self.moment = start
        self.waiting_for: datetime | None = None
        self._moved = asyncio.Condition()

    def now(self) -> datetime:
        return self.moment

    async def sleep_until(self, moment: datetime) -> None:
        async with self._moved:
            self.waiting_for = moment
            self._moved.notify_all()
            await self._moved.wait_for(lambda: self.moment >= moment)

    async def next_wake(self) -> datetime:
        async with self._moved:
            await asyncio.wait_for(self._moved.wait_for(
                lambda: self.waiting_for is not None and self.waiting_for > self.moment), 15)
            assert self.waiting_for is not None
            return self.waiting_for

    async def step_to(self, moment: datetime) -> None:
        async with self._moved:
            self.moment = moment
            self._moved.notify_all()


async def test_a_running_hub_backs_up_on_schedule_and_keeps_exactly_the_retained_set(
        isolated_farm: Farm, tmp_path: Path) -> None:
    start = datetime(2030, 1, 1, 1, 0, tzinfo=UTC)  # a Tuesday, an hour before the first scheduled backup
    clock = SteppedClock(start)
    elsewhere = tmp_path / "backup-disk"
    hub = await isolated_farm.hub(clock=clock, backup={"dir": str(elsewhere), "schedule": "daily 02:00",
                                                       "keep_daily": 3, "keep_weekly": 2})
    http = isolated_farm.http(hub)
    status, manual = await http.call("POST", "/api/v1/backups")
    assert status == 201 and manual["created_at"].startswith("2030-01-01T01:00")  # on the hub's clock
    for day in range(17):  # Jan 1 to Jan 17, a new file each day, so each backup holds one file more
        await http.upload(f"G28\nG1 X{day}\n".encode(), f"day{day}.gcode")
        due = await clock.next_wake()
        assert due == start + timedelta(days=day, hours=1), "the schedule sleeps until 02:00 UTC each day"
        await clock.step_to(due)
    await clock.next_wake()  # the last backup and its retention are done

    listed = (await http.call("GET", "/api/v1/backups"))[1]["items"]
    scheduled = [b for b in listed if b["kind"] == "scheduled"]
    # Days: the newest of Jan 17, 16 and 15. ISO weeks: the newest of Jan 14-20 (Jan 17) and of Jan 7-13 (Jan 13).
    assert [datetime.fromisoformat(b["created_at"]) for b in scheduled] == [
        datetime(2030, 1, d, 2, 0, tzinfo=UTC) for d in (13, 15, 16, 17)]
    assert [b["files"] for b in scheduled] == [13, 15, 16, 17]
    assert [b["id"] for b in listed] == [manual["id"]] + [b["id"] for b in scheduled]  # a manual one stays
    on_disk = sorted(p.name for p in elsewhere.iterdir() if (p / "manifest.json").exists())
    assert on_disk == sorted(b["id"] for b in listed)
    assert not (hub.config.data_dir / "backups").exists()  # all of it on the configured disk
    # Garbage collection left exactly what the kept backups need: their five databases and the 17 files.
    assert len(list((elsewhere / "objects").glob("*/*.gz"))) == 5 + 17
    for backup in listed:
        status, checked = await http.call("POST", f"/api/v1/backups/{backup['id']}/verify")
        assert status == 200 and checked["verified"] is True, checked


def farmhand(argv: list[str]) -> int:
    """`farmhand ARGV` in this process, leaving logging as the test run set it up."""
    return export_cli.run_backup(_parser().parse_args(argv))


def test_the_cli_creates_lists_verifies_and_restores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    damaged_backup(tmp_path)
    config = tmp_path / "hub.toml"
    config.write_text(f'hub_id = "farm-1"\ndata_dir = "{tmp_path / "hub"}"\n[backup]\ndir = "{tmp_path / "backups"}"\n')
    assert farmhand(["backup", "create", "--config", str(config)]) == 0
    assert "database and 1 files" in capsys.readouterr().out
    assert farmhand(["backup", "list", "--config", str(config), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 2
    backup_id = listed[-1]["id"]
    assert farmhand(["backup", "verify", backup_id, "--config", str(config)]) == 0
    assert farmhand(["backup", "restore", backup_id, "--config", str(config), "--to", str(tmp_path / "new")]) == 0
    assert "restored into" in capsys.readouterr().out
    assert (tmp_path / "new" / "hub.db").exists()
    assert farmhand(["backup", "verify", "nope", "--config", str(config)]) == 1
    assert "no backup 'nope'" in capsys.readouterr().err
