"""The Moonraker driver against the real Moonraker (from PyPI, in .peers/moonraker) and our Klippy simulator.

Each test runs its own Moonraker (about two seconds to start) with Moonraker's
``[authorization]`` on and no trusted clients, so every request needs the API
key, in front of a ``KlippySimulator`` on its Klippy socket.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.devices.base import CommandRejected
from agent.devices.moonraker import MoonrakerPrinter
from agent.node import Agent
from farmhand.sample_gcode import ring_tower
from farmhand.sim.moonraker_host import SimulatedKlipper, installed
from protocol.messages import DeviceState

from .authkit import AGENT_TOKEN
from .farm import Api, hub_config, wait_for
from .prerequisites import missing_reason
from .test_network_printer import Recorder

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not installed(), reason=missing_reason(
        "peer moonraker is not installed under .peers/ (scripts/peers/moonraker.sh)")),
]

LINES_PER_S = 150.0


class Klipper(SimulatedKlipper):
    def __init__(self, data: Path, **sim: object) -> None:
        super().__init__(data, **{"lines_per_s": LINES_PER_S, "heat_tau_s": 0.2, **sim})

    def driver(self, rec: Recorder, api_key: str | None = "", **kw: object) -> MoonrakerPrinter:
        key = self.host.api_key if api_key == "" else api_key
        return MoonrakerPrinter("voron", rec, url=self.host.url, api_key=key, **{"poll_interval_s": 0.2, **kw})  # type: ignore[arg-type]


@pytest.fixture
async def klipper(tmp_path: Path) -> AsyncIterator[Klipper]:
    printer = Klipper(tmp_path / "printer_data")
    await printer.start()
    try:
        yield printer
    finally:
        await printer.stop()


async def opened(printer: MoonrakerPrinter) -> MoonrakerPrinter:
    await printer.open()
    await wait_for(lambda: printer.connected and printer.status().state is DeviceState.IDLE, 10, "connected")
    return printer


def gcode_file(tmp_path: Path, moves: int = 400, *, extra: str = "") -> Path:
    path = tmp_path / f"job-{moves}.gcode"
    path.write_text("M140 S60\nM104 S210\nM190 S60\nM109 S210\n" + "G1 X10 Y10 E0.1\n" * moves + extra + "M104 S0\n")
    return path


# ------------------------------------------------------------------ the whole print, through the hub

def hub_events(hub_dir: Path, sender: str) -> list[str]:
    db = next(hub_dir.glob("*.db"))
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("select type from events where sender = ? order by seq", (sender,))]


async def test_a_whole_print_through_the_hub(private_mosquitto, klipper: Klipper, tmp_path: Path) -> None:
    from hub.app import Hub

    hub = Hub(hub_config(tmp_path / "hub", private_mosquitto.url))
    await hub.start()
    api = Api(hub.http_url)
    agent = Agent(AgentConfig.model_validate({
        "node_id": "klipper-node", "mqtt": {"url": private_mosquitto.url}, "storage": {"dir": tmp_path / "agent"},
        "hub": {"token": AGENT_TOKEN}, "telemetry_interval_s": 0.5,
        "devices": [{"id": "voron", "driver": "moonraker", "url": klipper.host.url, "api_key": klipper.host.api_key}],
    }))
    await agent.start()
    try:
        gcode = ring_tower(height_mm=1.0)
        job = await api.submit(await api.upload(gcode), name="ring")
        printing = await api.wait_job(job["id"], {"printing"}, timeout=30)
        assert printing["device"] == "klipper-node/voron"
        await wait_for(lambda: klipper.sim.printer.sd.position > 2000, 20, "the print to move")
        async with api.http.post(f"{api.base}/api/v1/jobs/{job['id']}/pause") as r:
            assert r.status == 202, await r.text()
        await api.wait_job(job["id"], {"paused"}, timeout=10)
        held = klipper.sim.printer.sd.position
        await asyncio.sleep(1.0)
        assert klipper.sim.printer.sd.position == held, "Klipper must stop reading the file while paused"
        async with api.http.post(f"{api.base}/api/v1/jobs/{job['id']}/resume") as r:
            assert r.status == 202, await r.text()
        done = await api.wait_job(job["id"], {"completed", "failed", "cancelled"}, timeout=60)
        assert done["state"] == "completed", done

        stored = klipper.host.gcodes / f"farmhand-job-{job['id']}.gcode"
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(gcode.encode()).hexdigest()
        assert klipper.sim.printer.started_files == [stored.name]
        await wait_for(lambda: "job_completed" in hub_events(tmp_path / "hub", "klipper-node"), 10, "events")
        events = [e for e in hub_events(tmp_path / "hub", "klipper-node") if e.startswith("job_")]
        assert events[0] == "job_started" and events[-1] == "job_completed"
        assert {"job_progress", "job_paused", "job_resumed"} <= set(events)
        assert events.index("job_paused") < events.index("job_resumed")
        assert events.count("job_started") == 1
    finally:
        await agent.stop()
        await api.close()
        await hub.stop()


# ------------------------------------------------------------------ commands and faults, driver and printer

async def test_an_upload_that_arrives_different_is_refused_and_not_started(klipper: Klipper, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.devices.moonraker as driver_module

    monkeypatch.setattr(driver_module, "sha256_of", lambda path: "0" * 64)  # as if the bytes changed on the way
    printer = await opened(klipper.driver(Recorder()))
    try:
        with pytest.raises(CommandRejected, match="checksum mismatch"):
            await printer.start_job("x1", gcode_file(tmp_path, 10))
        assert klipper.sim.printer.started_files == []
        assert not (klipper.host.gcodes / "farmhand-job-x1.gcode").exists()
        assert printer.status().job_id is None and printer.status().state is DeviceState.IDLE
    finally:
        await printer.close()


async def test_cancel_ends_the_job_on_a_printer_without_a_bed(tmp_path: Path) -> None:
    bedless = Klipper(tmp_path / "printer_data", has_bed=False)
    await bedless.start()
    rec = Recorder()
    printer = await opened(bedless.driver(rec))
    try:
        assert set(printer.status().temperatures) == {"T0"}, "a config without heater_bed is tolerated"
        await printer.start_job("c1", gcode_file(tmp_path, 2000))
        await wait_for(lambda: printer.status().state is DeviceState.PRINTING, 10, "printing")
        await printer.cancel()
        await wait_for(lambda: "job_failed" in rec.types(), 10, "the job to end")
        ended = rec.events[-1]
        assert ended.cancelled is True  # type: ignore[union-attr]
        assert bedless.sim.printer.stats.state == "cancelled"
        assert bedless.sim.printer.extruder.target == 0.0, "Klipper's CANCEL_PRINT macro turns the heaters off"
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 5, "idle again")
        # The same job again (the hub retries it here): Klipper still reports "cancelled" for this file name
        # until its next delta, and that earlier end must not end the new attempt.
        await printer.start_job("c1", gcode_file(tmp_path, 100))
        await wait_for(lambda: "job_completed" in rec.types(), 15, "the second attempt to complete")
        assert rec.types().count("job_failed") == 1
        assert bedless.sim.printer.started_files == ["farmhand-job-c1.gcode"] * 2
    finally:
        await printer.close()
        await bedless.stop()


async def test_emergency_stop_fails_the_job_in_klippers_words(klipper: Klipper, tmp_path: Path) -> None:
    rec = Recorder()
    printer = await opened(klipper.driver(rec))
    try:
        await printer.start_job("e1", gcode_file(tmp_path, 2000))
        await wait_for(lambda: printer.status().state is DeviceState.PRINTING, 10, "printing")
        await printer.emergency_stop()
        await wait_for(lambda: "job_failed" in rec.types(), 10, "the job to fail")
        assert rec.events[-1].reason.startswith("Shutdown due to webhooks request")  # type: ignore[union-attr]
        status = printer.status()
        assert status.state is DeviceState.ERROR
        assert status.error is not None and status.error.startswith("Shutdown due to webhooks request")
        assert "FIRMWARE_RESTART" in status.error
        await printer.firmware_restart()
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 15, "ready after FIRMWARE_RESTART")
        assert printer.status().error is None
    finally:
        await printer.close()


async def test_m112_in_the_file_shuts_klipper_down_and_fails_the_job(klipper: Klipper, tmp_path: Path) -> None:
    rec = Recorder()
    printer = await opened(klipper.driver(rec))
    try:
        await printer.start_job("m1", gcode_file(tmp_path, 50, extra="M112\n" + "G1 X1\n" * 500))
        await wait_for(lambda: "job_failed" in rec.types(), 20, "the job to fail")
        assert rec.events[-1].reason.startswith("Shutdown due to M112 command")  # type: ignore[union-attr]
        assert printer.status().state is DeviceState.ERROR
    finally:
        await printer.close()


async def test_moonraker_lost_mid_print_converges_and_starts_nothing_twice(klipper: Klipper, tmp_path: Path) -> None:
    rec = Recorder()
    printer = await opened(klipper.driver(rec, offline_after_s=3.0))
    try:
        job = gcode_file(tmp_path, 1200)
        await printer.start_job("r1", job)
        await wait_for(lambda: (printer.status().progress or 0) > 0.1, 15, "progress")
        await klipper.host.stop()
        await wait_for(lambda: printer.status().state is DeviceState.DISCONNECTED, 10, "offline")
        await printer.start_job("r1", job)  # the hub repeats the command while the link is down: no second start
        assert printer.status().job_id == "r1"
        progress_before = klipper.sim.printer.sd.position
        await klipper.host.start()
        await wait_for(lambda: printer.status().state is DeviceState.PRINTING, 20, "the state to converge")
        assert printer.status().job_id == "r1"
        assert klipper.sim.printer.sd.position > progress_before, "Klippy printed on without Moonraker"
        await wait_for(lambda: "job_completed" in rec.types(), 30, "the job to complete")
        assert klipper.sim.printer.started_files == ["farmhand-job-r1.gcode"]
        assert rec.types().count("job_started") == 1 and rec.types().count("job_completed") == 1
    finally:
        await printer.close()


async def test_a_restarted_agent_finds_its_job_by_the_file_name(klipper: Klipper, tmp_path: Path) -> None:
    first = await opened(klipper.driver(Recorder()))
    await first.start_job("a1", gcode_file(tmp_path, 600))
    await first.close()
    rec = Recorder()
    second = klipper.driver(rec)
    await second.open()
    try:
        await wait_for(lambda: second.status().job_id == "a1", 10, "the job found again")
        with pytest.raises(CommandRejected, match="busy"):
            await second.start_job("a2", gcode_file(tmp_path, 10))
        await wait_for(lambda: "job_completed" in rec.types(), 30, "the job to complete")
        assert klipper.sim.printer.started_files == ["farmhand-job-a1.gcode"]
    finally:
        await second.close()


@pytest.mark.parametrize("key, words", [("0123456789abcdef0123456789abcdef", "Invalid API Key"),
                                        (None, "Unauthorized")])
async def test_wrong_credentials_are_one_clear_error_and_no_storm(klipper: Klipper, key: str | None,
                                                                  words: str) -> None:
    class Counted(MoonrakerPrinter):
        sessions = 0

        async def session(self) -> None:
            Counted.sessions += 1
            await super().session()

    rec = Recorder()
    printer = Counted("voron", rec, url=klipper.host.url, api_key=key, poll_interval_s=0.2)
    await printer.open()
    try:
        await wait_for(lambda: printer.status().state is DeviceState.ERROR, 10, "the login error")
        error = printer.status().error or ""
        assert "login refused" in error and words in error, error
        await asyncio.sleep(3.0)
        assert Counted.sessions == 1, "a refused key must not be retried at speed"
        assert [s.state for s in rec.statuses].count(DeviceState.ERROR) == 1
    finally:
        await printer.close()


async def test_an_unreachable_moonraker_is_offline_and_stalls_nothing(klipper: Klipper, tmp_path: Path) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers: a host that hangs

    black_hole = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = black_hole.sockets[0].getsockname()[1]
    dead = [MoonrakerPrinter(f"dead{n}", Recorder(), url=url, api_key="k", poll_interval_s=0.2, offline_after_s=2.0)
            for n, url in enumerate([f"http://127.0.0.1:{port}", "http://127.0.0.1:9"])]
    rec = Recorder()
    live = await opened(klipper.driver(rec))
    try:
        for printer in dead:
            await printer.open()
        await live.start_job("l1", gcode_file(tmp_path, 600))
        await wait_for(lambda: "job_completed" in rec.types(), 30, "the live printer's job")
        for printer in dead:
            assert printer.status().state is DeviceState.DISCONNECTED
            assert not printer.connected
    finally:
        for printer in dead:
            await printer.close()
        await live.close()
        black_hole.close()


async def test_the_console_shows_klippers_answers(klipper: Klipper) -> None:
    rec = Recorder()
    printer = await opened(klipper.driver(rec))
    try:
        await printer.send_gcode("c1", ["M104 S100", "M105", "NOT_A_COMMAND"])
        output = rec.events[-1]
        assert output.type == "console_output" and output.command_id == "c1"
        assert any(line.startswith("B:") and "T0:" in line for line in output.lines), output.lines  # type: ignore[union-attr]
        assert '// Unknown command:"NOT_A_COMMAND"' in output.lines  # type: ignore[union-attr]
        await printer.send_gcode("c2", ["SDCARD_PRINT_FILE FILENAME=missing.gcode"])
        assert "!! Unable to open file" in rec.events[-1].lines  # type: ignore[union-attr]
        await wait_for(lambda: printer.status().temperatures["T0"].target == 100.0, 5, "the new target")
    finally:
        await printer.close()


async def test_klippy_restart_is_followed_and_resubscribed(klipper: Klipper) -> None:
    rec = Recorder()
    printer = await opened(klipper.driver(rec))
    try:
        await printer.send_gcode("r", ["FIRMWARE_RESTART"])
        await wait_for(lambda: DeviceState.DISCONNECTED in [s.state for s in rec.statuses], 10, "Klippy gone")
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 15, "Klippy back")
        klipper.sim.printer.run_script("M104 S120")
        await wait_for(lambda: printer.status().temperatures["T0"].target == 120.0, 5, "deltas after re-subscribing")
    finally:
        await printer.close()


async def test_closing_while_a_call_is_answered_always_stops_the_driver(klipper: Klipper) -> None:
    """A cancellation that arrives with Moonraker's answer must not be lost (asyncio.wait_for on 3.11 lost it)."""
    rng = random.Random(15)
    for attempt in range(25):
        printer = await opened(klipper.driver(Recorder(), poll_interval_s=0.002))  # a call always in flight
        await asyncio.sleep(rng.random() * 0.03)
        closing = asyncio.create_task(printer.close())
        done, _ = await asyncio.wait({closing}, timeout=5)
        assert closing in done, f"close() hung on attempt {attempt}: the session ignored its cancellation"
