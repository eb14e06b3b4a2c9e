"""The PrusaLink driver against the PrusaLink simulator, and the pieces it is made of.

Printing needs the printer's firmware, which cannot run here: the job lifecycle
runs against ``farmhand.sim.prusalink``, which follows Prusa's v1 OpenAPI and
Buddy firmware's digest challenge. The login and handshake are also tested
against Prusa's real PrusaLink (test_prusalink_peer.py); a whole print through
a hub and an agent is in test_prusalink_farm.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from agent import devices
from agent.config import AgentConfig
from agent.devices.base import CommandRejected
from agent.devices.network import Backoff, JobPhase
from agent.devices.prusalink import PrusaLinkPrinter
from agent.devices.prusalink_auth import Challenge, DigestLogin
from agent.devices.prusalink_state import ProgressScale, read_state
from farmhand.sim.prusalink import PrusaLinkSim
from farmhand.sim.prusalink_printer import SimPrinter
from protocol.messages import DeviceState

from .conftest import free_port
from .test_network_printer import Recorder

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "sim-password"


async def until(predicate, timeout: float = 10.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------- the pieces


def test_digest_answers_the_rfc_2617_example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.devices.prusalink_auth.secrets.token_hex", lambda n: "0a4f113b")
    login = DigestLogin("Mufasa", "Circle Of Life")
    assert login.header("GET", "/dir/index.html") is None, "no credentials before the printer challenges"
    login.challenged(Challenge.parse('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                                     'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
                                     'opaque="5ccc069c403ebaf9f0171e9517f40e41"'))
    header = login.header("GET", "/dir/index.html") or ""
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert "nc=00000001" in header and 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header
    assert "nc=00000002" in (login.header("GET", "/dir/index.html") or ""), "a kept nonce counts its uses"


def test_buddy_challenge_without_qop_and_stale_flag() -> None:
    fresh = Challenge.parse('Digest realm="Printer API", nonce="0738cba1009742ac", stale=false')
    stale = Challenge.parse('Digest realm="Printer API", nonce="0738cba1009742ad", stale=true')
    assert (fresh.realm, fresh.qop, fresh.stale, stale.stale) == ("Printer API", None, False, True)
    login = DigestLogin("maker", "pw")
    login.challenged(fresh)
    expected = hashlib.md5(b"%s:0738cba1009742ac:%s" % (  # noqa: S324
        hashlib.md5(b"maker:Printer API:pw").hexdigest().encode(),  # noqa: S324
        hashlib.md5(b"GET:/api/v1/status").hexdigest().encode())).hexdigest()  # noqa: S324
    assert f'response="{expected}"' in (login.header("GET", "/api/v1/status") or "")


@pytest.mark.parametrize(("readings", "expected"), [
    # The spec's percent: 42.0 is 42 %, and 0.5 early in a job is 0.5 %.
    ([(42.0, 420, 580)], [0.42]),
    ([(0.5, 5, 995), (60.0, 600, 400)], [0.005, 0.6]),
    # Builds that report a fraction: 0.42 with 42 % of the time gone is 42 %.
    ([(0.42, 420, 580), (0.9, 900, 100), (1.0, 1000, 0)], [0.42, 0.9, 1.0]),
    # No times to go by: percent, as documented; never past 100 %; nonsense is no reading.
    ([(0.7, None, None), (100.0, None, None), (250.0, None, None), ("x", None, None)], [0.007, 1.0, 1.0, None]),
])
def test_progress_comes_out_right_in_either_scale(readings: list, expected: list) -> None:
    scale = ProgressScale()
    assert [scale.fraction(7, v, printing, remaining) for v, printing, remaining in readings] == expected


def test_a_new_job_learns_its_scale_afresh() -> None:
    scale = ProgressScale()
    assert scale.fraction(1, 50.0) == 0.5  # percent, learned for job 1
    assert scale.fraction(2, 0.5, 500, 500) == 0.5  # job 2 reports a fraction


@pytest.mark.parametrize(("printer", "job", "state", "phase"), [
    ("IDLE", None, DeviceState.IDLE, None),
    ("READY", None, DeviceState.IDLE, None),
    ("BUSY", None, DeviceState.IDLE, None),
    ("PRINTING", "PRINTING", DeviceState.PRINTING, JobPhase.PRINTING),
    ("BUSY", "PRINTING", DeviceState.PRINTING, JobPhase.PRINTING),
    ("PAUSED", "PAUSED", DeviceState.PAUSED, JobPhase.PAUSED),
    ("ATTENTION", "PRINTING", DeviceState.PAUSED, JobPhase.PAUSED),
    ("ATTENTION", None, DeviceState.ERROR, None),
    ("FINISHED", "FINISHED", DeviceState.IDLE, JobPhase.FINISHED),
    ("STOPPED", "STOPPED", DeviceState.IDLE, JobPhase.CANCELLED),
    ("ERROR", "PRINTING", DeviceState.ERROR, JobPhase.FAILED),
    ("ERROR", None, DeviceState.ERROR, None),
])
def test_printer_states_map_onto_farmhand_states(printer: str, job: str | None, state: DeviceState,
                                                 phase: JobPhase | None) -> None:
    reading = read_state(printer, job, "Filament runout" if printer in ("ATTENTION", "ERROR") else None)
    assert (reading.state, reading.phase) == (state, phase)
    if printer in ("ATTENTION", "ERROR"):
        assert reading.error == "Filament runout"


# ---------------------------------------------------------------- against the simulator


@pytest.fixture
async def sim() -> AsyncIterator[PrusaLinkSim]:
    server = PrusaLinkSim()
    yield server
    await server.close()


@asynccontextmanager
async def driving(sim: PrusaLinkSim, printer: SimPrinter, rec: Recorder | None = None,
                  **kw: object) -> AsyncIterator[PrusaLinkPrinter]:
    """A driver logged in to a simulated printer, closed afterwards."""
    url = await sim.add(printer)
    login = {"username": "maker", "password": PASSWORD} if "api_key" not in kw else {}
    device = PrusaLinkPrinter("mk4", rec or Recorder(), url=url, poll_interval_s=0.1,  # type: ignore[arg-type]
                              **{**login, **kw})  # type: ignore[arg-type]
    await device.open()
    try:
        await until(lambda: device.connected, what="the login")
        yield device
    finally:
        await device.close()


def gcode(tmp_path: Path, size: int = 200_000) -> Path:
    path = tmp_path / "part.gcode"
    path.write_bytes(b"G1 X10 Y10 E0.5\n" * (size // 16))
    return path


async def test_a_job_is_uploaded_verified_and_started_once(sim: PrusaLinkSim, tmp_path: Path) -> None:
    printer = SimPrinter(print_s=30.0)
    rec = Recorder()
    async with driving(sim, printer, rec) as device:
        job = gcode(tmp_path)
        await device.start_job("41", job)
        stored = printer.files["usb/farmhand-job-41.gcode"]
        assert stored.size == job.stat().st_size
        assert stored.sha256 == hashlib.sha256(job.read_bytes()).hexdigest()
        assert printer.job is not None and printer.job.path == "farmhand-job-41.gcode"
        await device.start_job("41", job)  # a replayed command
        with pytest.raises(CommandRejected, match="busy"):
            await device.start_job("42", job)
        assert printer._next_job_id == 2, "the printer started exactly one job"
        await until(lambda: device.status().state is DeviceState.PRINTING, what="printing")
        assert device.info().firmware == "PrusaLink, firmware 6.2.0+sim"
        assert device.status().temperatures["T0"].target == 215.0
        assert printer.challenges == 1 and printer.auth_failures == 0, "one 401 opens the session, no more"


class LossyStorage(SimPrinter):
    """A printer whose storage keeps one byte less than it was sent (a failing USB stick)."""

    def store(self, storage: str, path: str, size: int, sha256: str, *, overwrite: bool) -> None:
        super().store(storage, path, size - 1, sha256, overwrite=overwrite)


async def test_a_short_upload_is_refused_stopped_and_deleted(sim: PrusaLinkSim, tmp_path: Path) -> None:
    printer = LossyStorage(print_s=60.0)
    rec = Recorder()
    async with driving(sim, printer, rec) as device:
        with pytest.raises(CommandRejected, match="arrived with 1999 bytes of 2000"):
            await device.start_job("4", gcode(tmp_path, 2000))
        assert printer.printer_state() == "STOPPED", "the print the upload started is stopped"
        assert printer.files == {} and rec.types() == []
        assert device.status().job_id is None


@pytest.mark.parametrize("scale", ["percent", "fraction"])
async def test_progress_and_time_left_whatever_scale_the_firmware_uses(sim: PrusaLinkSim, tmp_path: Path,
                                                                       scale: str) -> None:
    printer = SimPrinter(print_s=4.0, progress_scale=scale)  # type: ignore[arg-type]
    async with driving(sim, printer) as device:
        await device.start_job("1", gcode(tmp_path, 2000))
        await asyncio.sleep(2.0)
        await until(lambda: device.status().progress is not None)
        status, elapsed = device.status(), printer._printed(printer.job, printer.clock())  # type: ignore[arg-type]
        assert status.progress == pytest.approx(elapsed / 4.0, abs=0.1)
        assert status.remaining_s == pytest.approx(4.0 - elapsed, abs=1.0)


class EndedJobLeftOutOfStatus(SimPrinter):
    """A build whose status names no job once it has ended; /api/v1/job still gives the last one."""

    def status(self) -> dict:  # type: ignore[type-arg]
        status = super().status()
        if self.printer_state() in ("FINISHED", "STOPPED"):
            status.pop("job", None)
        return status


async def test_a_job_ends_right_when_the_status_leaves_the_ended_job_out(sim: PrusaLinkSim, tmp_path: Path) -> None:
    printer = EndedJobLeftOutOfStatus(print_s=1.0)
    rec = Recorder()
    async with driving(sim, printer, rec) as device:
        await device.start_job("6", gcode(tmp_path, 2000))
        await until(lambda: rec.types()[-1:] == ["job_completed"], what="the completion")
        assert device.status().state is DeviceState.IDLE


class GarbledStatus(SimPrinter):
    """A printer whose status loses its ``printer`` object while ``garbled`` is set."""

    garbled = False

    def status(self) -> dict:  # type: ignore[type-arg]
        return {"jobb": 1} if self.garbled else super().status()


async def test_a_malformed_status_is_counted_and_the_link_stays_up(sim: PrusaLinkSim) -> None:
    printer = GarbledStatus()
    async with driving(sim, printer) as device:
        printer.garbled = True
        await until(lambda: device.malformed >= 3, what="malformed replies counted")
        assert device.connected and device.status().state is DeviceState.IDLE
        printer.garbled = False
        printer.fail("Heater failure")
        await until(lambda: device.status().state is DeviceState.ERROR, what="good replies read again")


async def test_attention_pauses_the_job_and_an_error_fails_it_in_the_printers_words(
        sim: PrusaLinkSim, tmp_path: Path) -> None:
    printer = SimPrinter(print_s=60.0)
    rec = Recorder()
    async with driving(sim, printer, rec) as device:
        await device.start_job("5", gcode(tmp_path, 2000))
        printer.raise_attention("Filament runout")
        await until(lambda: "job_paused" in rec.types(), what="the pause")
        assert rec.events[rec.types().index("job_paused")].reason == "Filament runout"  # type: ignore[union-attr]
        printer.clear_attention()
        await until(lambda: "job_resumed" in rec.types(), what="the resume")
        printer.fail("Thermal runaway")
        await until(lambda: "job_failed" in rec.types(), what="the failure")
        assert rec.events[-1].reason == "Thermal runaway"  # type: ignore[union-attr]
        assert device.status().state is DeviceState.ERROR and device.status().error == "Thermal runaway"


async def test_emergency_stop_stops_the_job_as_the_api_allows(sim: PrusaLinkSim, tmp_path: Path) -> None:
    printer = SimPrinter(print_s=60.0)
    rec = Recorder()
    async with driving(sim, printer, rec) as device:
        await device.start_job("9", gcode(tmp_path, 2000))
        await until(lambda: device.status().state is DeviceState.PRINTING)
        await device.emergency_stop()
        assert printer.job is not None and printer.job.state == "STOPPED"
        await until(lambda: "job_failed" in rec.types(), what="the stopped job to end")
        assert rec.events[-1].cancelled  # type: ignore[union-attr]
        with pytest.raises(CommandRejected, match="no emergency stop"):
            await device.emergency_stop()


async def test_a_stale_nonce_is_renewed_without_a_failure(sim: PrusaLinkSim, tmp_path: Path) -> None:
    printer = SimPrinter(nonce_ttl_s=0.3)
    async with driving(sim, printer) as device:
        await asyncio.sleep(1.5)
        assert device.connected and printer.challenges >= 3, "the nonce went stale and was renewed"
        assert printer.auth_failures == 0
        await device.start_job("3", gcode(tmp_path, 2000))  # an upload after a stale nonce still goes through
        assert printer.job is not None


@pytest.mark.parametrize("login", [{"password": "wrong"}, {"api_key": "wrong-key"}])
async def test_wrong_credentials_are_one_clear_error_and_no_retry_storm(sim: PrusaLinkSim, login: dict) -> None:
    printer = SimPrinter(api_key="right-key")
    kw = login if "api_key" in login else {"username": "maker", **login}
    url = await sim.add(printer)
    device = PrusaLinkPrinter("mk4", Recorder(), url=url, poll_interval_s=0.05,
                              backoff=Backoff(first_s=0.01, max_s=30.0), **kw)
    await device.open()
    try:
        await until(lambda: device.status().state is DeviceState.ERROR, what="the login error")
        await asyncio.sleep(1.0)
        assert printer.auth_failures == 1, "one refused login, then a long wait: no lockout"
        error = device.status().error or ""
        assert ("wrong user name or password" if "password" in login else "refused the API key") in error
        with pytest.raises(CommandRejected, match="login refused"):
            await device.emergency_stop()
    finally:
        await device.close()


async def test_an_api_key_logs_in_on_older_builds(sim: PrusaLinkSim) -> None:
    printer = SimPrinter(api_key="right-key")
    async with driving(sim, printer, api_key="right-key") as device:
        assert device.status().state is DeviceState.IDLE
        assert printer.challenges == 0 and printer.auth_failures == 0


async def test_an_unchanged_status_is_not_sent_again_when_the_printer_offers_an_etag(sim: PrusaLinkSim) -> None:
    printer = SimPrinter(status_etag=True)
    async with driving(sim, printer) as device:
        await asyncio.sleep(0.6)
        assert printer.status_not_modified >= 3
        printer.fail("Heater failure")
        await until(lambda: device.status().state is DeviceState.ERROR, what="a changed status to come through")
        assert device.status().error == "Heater failure"


async def test_an_unreachable_printer_is_offline_and_stalls_no_other(sim: PrusaLinkSim, tmp_path: Path) -> None:
    dead = PrusaLinkPrinter("dead", Recorder(), url=f"http://127.0.0.1:{free_port()}", username="maker",
                            password=PASSWORD, poll_interval_s=0.1, backoff=Backoff(first_s=0.05, max_s=0.2))
    await dead.open()
    printer = SimPrinter(print_s=1.0)
    rec = Recorder()
    try:
        async with driving(sim, printer, rec) as alive:
            await alive.start_job("1", gcode(tmp_path, 2000))
            await until(lambda: "job_completed" in rec.types(), what="the other printer's job")
            assert dead.status().state is DeviceState.DISCONNECTED
    finally:
        await dead.close()


async def test_a_link_lost_mid_print_converges_and_starts_nothing_twice(sim: PrusaLinkSim, tmp_path: Path) -> None:
    printer = SimPrinter(print_s=3.0)
    rec = Recorder()
    async with driving(sim, printer, rec, offline_after_s=0.5, backoff=Backoff(first_s=0.05, max_s=0.2)) as device:
        await device.start_job("8", gcode(tmp_path, 2000))
        await until(lambda: device.status().state is DeviceState.PRINTING)
        await sim.go_offline(printer)
        with pytest.raises(CommandRejected, match="did not answer|not connected"):
            await device.pause()  # before the silence is noticed: a clear refusal, not a crash
        await until(lambda: device.status().state is DeviceState.DISCONNECTED, what="offline")
        await asyncio.sleep(3.2)  # the printer finishes the job while we cannot see it
        assert printer.printer_state() == "FINISHED"
        await sim.go_online(printer)
        await until(lambda: "job_completed" in rec.types(), what="the finish seen after the reconnect")
        assert rec.types().count("job_started") == 1 and printer._next_job_id == 2
        assert device.status().state is DeviceState.IDLE and device.status().job_id is None


def test_the_config_example_makes_a_prusalink_printer() -> None:
    example = (REPO / "systemd" / "agent.example.toml").read_text()
    block = example[example.index('# id = "mk4-1"'):].split("\n\n")[0]
    toml = "\n".join(line.removeprefix("# ").split("  #")[0] for line in block.splitlines())
    config = AgentConfig.model_validate(tomllib.loads(f'node_id = "pi-01"\n[[devices]]\n{toml}'))
    device = devices.create(config.devices[0], Recorder(), poll_interval_s=2.0)  # type: ignore[arg-type]
    assert isinstance(device, PrusaLinkPrinter) and device.url == "http://192.0.2.20"
    assert device.offline_after_s == 15
    with pytest.raises(ValueError, match="needs username and password"):
        AgentConfig.model_validate({"node_id": "pi-01", "devices": [
            {"id": "mk4-1", "driver": "prusalink", "url": "http://192.0.2.20", "username": "maker"}]})


async def test_an_agent_restarted_mid_print_finds_its_job_on_the_printer(sim: PrusaLinkSim, tmp_path: Path) -> None:
    printer = SimPrinter(print_s=2.0)
    async with driving(sim, printer) as before:
        await before.start_job("12", gcode(tmp_path, 2000))
    rec = Recorder()
    url = sim.url(printer)
    after = PrusaLinkPrinter("mk4", rec, url=url, username="maker", password=PASSWORD, poll_interval_s=0.1)
    await after.open()
    try:
        await until(lambda: after.status().job_id == "12", what="the job found again")
        await until(lambda: "job_completed" in rec.types(), what="its completion")
        assert rec.events[-1].job_id == "12" and printer._next_job_id == 2  # type: ignore[union-attr]
    finally:
        await after.close()
