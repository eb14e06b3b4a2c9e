"""The Bambu Lab LAN driver against simulated printers on a real Mosquitto (TLS, logins) and a real FTPS server.

No Bambu firmware runs here, so the printer's side is ``farmhand.sim.bambu``:
a Mosquitto TLS listener per printer with the printer's self-signed
certificate and ``bblp`` login, a simulated printer client that answers as
P1/X1 firmware does, and the SD card over implicit FTPS.
"""

from __future__ import annotations

import asyncio
import ftplib
import io
import json
import socket
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig
from agent.devices import bambu_ftps
from agent.devices.base import CommandRejected, Console, declared_capabilities
from agent.devices.bambu import BambuAddress, BambuPrinter, pinned_context
from agent.devices.network import Backoff
from farmhand.sim.bambu import DEFAULT_ACCESS_CODE, BambuLan
from agent.node import Agent
from farmhand.sample_gcode import ring_tower
from farmhand.sim.bambu_broker import free_port
from farmhand.sim.bambu_printer import SimulatedBambuPrinter
from hub.app import Hub
from protocol.messages import DeviceState
from protocol.mqtt import MqttSession

from .authkit import AGENT_TOKEN
from .farm import Api, hub_config
from .prerequisites import program
from .test_farm import hub_events
from .test_network_printer import Recorder

SERIAL = "01S00C000000001"


pytestmark = pytest.mark.integration


@pytest.fixture
async def lan(tmp_path: Path) -> AsyncIterator[BambuLan]:
    program("mosquitto")
    program("openssl")
    lan = BambuLan(tmp_path / "lan")
    yield lan
    await lan.stop()


def driver(lan: BambuLan, at: str, rec: Recorder, **kw: Any) -> BambuPrinter:
    """A driver for the simulated printer ``at``; ``kw`` overrides what it is told (serial, access code…)."""
    options: dict[str, Any] = {"address": BambuAddress.parse(lan.url(at)), "serial": at,
                               "access_code": DEFAULT_ACCESS_CODE, "ca_file": lan.certificate(at),
                               "poll_interval_s": 0.2, "offline_after_s": 3.0} | kw
    printer = BambuPrinter(f"bambu-{at[-3:]}", rec, **options)  # type: ignore[arg-type]
    printer.backoff = Backoff(first_s=0.2, max_s=2.0)
    return printer


@asynccontextmanager
async def connected(lan: BambuLan, driver_options: dict[str, Any] | None = None,
                    **sim_options: Any) -> AsyncIterator[tuple[SimulatedBambuPrinter, BambuPrinter, Recorder]]:
    """One simulated printer and a driver that has heard its first report."""
    sim = lan.add(SERIAL, **sim_options)
    await lan.start()
    rec = Recorder()
    printer = driver(lan, SERIAL, rec, **(driver_options or {}))
    await printer.open()
    try:
        await until(lambda: printer.connected, "the first report")
        yield sim, printer, rec
    finally:
        await printer.close()


async def until(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def project_3mf(path: Path, gcode: bytes = b"G28\nG1 X10 Y10\n") -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("3D/3dmodel.model", "<model/>")
        archive.writestr("Metadata/plate_1.gcode", gcode)
    path.write_bytes(buffer.getvalue())
    return path


async def test_a_3mf_project_prints_through_pause_and_resume(lan: BambuLan, tmp_path: Path) -> None:
    async with connected(lan, print_s=3.0, report_interval_s=0.1) as (sim, printer, rec):
        status = printer.status()
        assert status.state is DeviceState.IDLE
        assert [m.slot for m in status.materials] == ["ams0/0", "ams0/1", "ams0/2"]
        assert printer.info().firmware == "Bambu Lab 01.07.00.00"
        job = project_3mf(tmp_path / "cached-file")
        await printer.start_job("41", job)
        stored = sim.sdcard / "farmhand-job-41.3mf"
        assert stored.read_bytes() == job.read_bytes()
        start = next(r["print"] for r in sim.requests if r.get("print", {}).get("command") == "project_file")
        assert start["url"] == "file:///sdcard/farmhand-job-41.3mf" and start["param"] == "Metadata/plate_1.gcode"
        assert start["use_ams"] is True
        await until(lambda: sim.status["gcode_state"] == "RUNNING" and "job_progress" in rec.types(), "printing")
        await printer.pause()
        await until(lambda: "job_paused" in rec.types(), "paused")
        assert printer.status().state is DeviceState.PAUSED
        await printer.resume()
        await until(lambda: "job_completed" in rec.types(), "completed")
        types = [t for t in rec.types() if t != "job_progress"]
        assert types == ["job_started", "job_paused", "job_resumed", "job_completed"]
        assert len(sim.starts()) == 1
        assert printer.status().state is DeviceState.IDLE and printer.status().job_id is None
        assert printer.malformed == 0 and lan.ftps(SERIAL).refused_data == 0


async def test_cancel_and_emergency_stop_end_the_job_as_the_printer_says(lan: BambuLan, tmp_path: Path) -> None:
    # An X1: whole reports every time.
    async with connected(lan, full_reports=True, print_s=60.0, report_interval_s=0.1) as (sim, printer, rec):
        gcode = tmp_path / "part.gcode"
        gcode.write_text("G28\nG1 X1\n")
        await printer.start_job("1", gcode)
        assert sim.starts() == ["/sdcard/farmhand-job-1.gcode"]
        await until(lambda: sim.status["gcode_state"] == "RUNNING", "running")
        await printer.cancel()
        await until(lambda: "job_failed" in rec.types(), "the cancelled job to end")
        ended = rec.events[-1]
        assert ended.cancelled and ended.reason == "0300_400C: The task was canceled."  # type: ignore[union-attr]

        await printer.start_job("2", gcode)
        await until(lambda: sim.status["gcode_state"] == "RUNNING", "the second job running")
        await printer.emergency_stop()
        await until(lambda: rec.types().count("job_failed") == 2, "the stopped job to end")
        assert sim.status["nozzle_target_temper"] == 0 and sim.status["bed_target_temper"] == 0
        assert printer.status().state is DeviceState.IDLE


async def test_the_link_lost_mid_print_converges_and_starts_nothing_twice(lan: BambuLan, tmp_path: Path) -> None:
    async with connected(lan, {"offline_after_s": 1.0}, print_s=6.0, report_interval_s=0.1) as (sim, printer, rec):
        gcode = tmp_path / "part.gcode"
        gcode.write_text("G28\n")
        await printer.start_job("7", gcode)
        await until(lambda: sim.status["gcode_state"] == "RUNNING", "running")
        await lan.stop_broker()
        await until(lambda: printer.status().state is DeviceState.DISCONNECTED, "the device offline")
        await printer.start_job("7", gcode)  # the hub repeats its command while the link is down: a no-op
        await asyncio.sleep(0.5)
        await lan.start_broker()
        await until(lambda: printer.connected, "the link back")
        assert printer.status().job_id == "7"
        await until(lambda: "job_completed" in rec.types(), "the job to complete after the outage", timeout=20)
        assert rec.types().count("job_started") == 1 and len(sim.starts()) == 1
        pushalls = [r for r in sim.requests if r.get("pushing", {}).get("command") == "pushall"]
        assert len(pushalls) >= 2, "every connect asks for the whole state"


async def test_an_agent_restarted_mid_print_finds_its_job_on_the_printer(lan: BambuLan, tmp_path: Path) -> None:
    async with connected(lan, print_s=3.0, report_interval_s=0.1) as (sim, printer, rec):
        gcode = tmp_path / "part.gcode"
        gcode.write_text("G28\n")
        await printer.start_job("8", gcode)
        await printer.close()  # the agent goes down mid-print
        later = Recorder()
        again = driver(lan, SERIAL, later)
        await again.open()
        try:
            await until(lambda: again.status().job_id == "8", "the job found again")
            await until(lambda: "job_completed" in later.types(), "the job to complete")
            assert "job_started" not in later.types() and len(sim.starts()) == 1
        finally:
            await again.close()


async def test_a_quiet_p1_is_probed_not_dropped(lan: BambuLan) -> None:
    """An idle P1 with nothing new says nothing; a cheap get_version keeps the link, and no pushall storm."""
    async with connected(lan, {"offline_after_s": 2.0}, report_interval_s=0.1) as (sim, printer, _):
        sessions = count_sessions(printer)
        await asyncio.sleep(4.0)
        assert printer.connected and sessions() == 0, "the link was never taken for lost"
        kinds = [next(iter(r)) + "." + r[next(iter(r))].get("command", "") for r in sim.requests]
        assert kinds.count("pushing.pushall") == 1 and kinds.count("info.get_version") >= 3


async def test_the_printers_errors_surface_in_its_own_words(lan: BambuLan, tmp_path: Path) -> None:
    async with connected(lan, print_s=30.0, report_interval_s=0.1) as (sim, printer, rec):
        sim.raise_hms(0x03000100, 0x00010007)
        await until(lambda: printer.status().state is DeviceState.ERROR, "the HMS error")
        assert printer.status().error == ("HMS_0300_0100_0001_0007: The heatbed temperature is abnormal; "
                                          "the sensor may have an open circuit.")
        sim.clear_hms()
        await until(lambda: printer.status().state is DeviceState.IDLE, "the error cleared")
        gcode = tmp_path / "part.gcode"
        gcode.write_text("G28\n")
        await printer.start_job("11", gcode)
        await until(lambda: sim.status["gcode_state"] == "RUNNING", "running")
        sim.run_out()
        await until(lambda: "job_paused" in rec.types(), "the run-out pause")
        paused = next(e for e in rec.events if e.type == "job_paused")
        assert paused.reason == ("0300_8015: The filament on external spool has run out; "  # type: ignore[union-attr]
                                 "please load new filament.")
        await printer.resume()
        await until(lambda: "job_resumed" in rec.types(), "resumed")
        sim.fail(0x03004006)
        await until(lambda: "job_failed" in rec.types(), "the failure")
        failed = rec.events[-1]
        assert failed.reason == "0300_4006: The nozzle is clogged." and not failed.cancelled  # type: ignore[union-attr]


async def test_a_wrong_access_code_is_one_clear_error_and_no_retry_storm(lan: BambuLan) -> None:
    lan.add(SERIAL)
    await lan.start()
    rec = Recorder()
    printer = driver(lan, SERIAL, rec, access_code="00000000")
    attempts = count_sessions(printer)
    await printer.open()
    try:
        await until(lambda: printer.status().state is DeviceState.ERROR, "the error")
        assert printer.status().error == "login refused: the printer refused the access code"
        await asyncio.sleep(1.5)
        assert attempts() == 1, "a refused login is retried slowly, not at once"
    finally:
        await printer.close()


async def test_a_certificate_other_than_the_pinned_one_is_refused(lan: BambuLan) -> None:
    lan.add(SERIAL)
    lan.add("01S00C000000002")
    await lan.start()
    impostor = Recorder()
    printer = driver(lan, SERIAL, impostor, ca_file=lan.certificate("01S00C000000002"))
    renamed = Recorder()
    other = driver(lan, SERIAL, renamed, serial="01S00C000000009")
    await printer.open()
    await other.open()
    try:
        await until(lambda: printer.status().state is DeviceState.ERROR, "the certificate error")
        assert "certificate is not the one pinned" in (printer.status().error or "")
        await until(lambda: other.status().state is DeviceState.ERROR, "the name error")
        assert "Hostname mismatch" in (other.status().error or "")
        assert not printer.connected and not other.connected
    finally:
        await printer.close()
        await other.close()


async def test_unreachable_printers_are_offline_and_stall_nothing(lan: BambuLan, tmp_path: Path) -> None:
    sim = lan.add(SERIAL, print_s=2.0, report_interval_s=0.1)
    await lan.start()
    dead_recs = [Recorder() for _ in range(10)]
    dead = [BambuPrinter(f"dead-{i}", rec, address=BambuAddress("127.0.0.1", free_port(), free_port()),
                         serial=f"DEAD{i}", access_code="x", ca_file=lan.certificate(SERIAL), poll_interval_s=0.2)
            for i, rec in enumerate(dead_recs)]
    for p in dead:
        p.backoff = Backoff(first_s=0.05, max_s=0.2)
    silent = socket.socket()  # accepts connections and never says a word
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    mute = BambuPrinter("mute", Recorder(), address=BambuAddress("127.0.0.1", silent.getsockname()[1]),
                        serial="MUTE", access_code="x", ca_file=lan.certificate(SERIAL), offline_after_s=1.0)
    dead.append(mute)
    mute_attempts = count_sessions(mute)
    rec = Recorder()
    live = driver(lan, SERIAL, rec)
    for p in [*dead, live]:
        await p.open()
    try:
        await until(lambda: live.connected, "the live printer")
        gcode = tmp_path / "part.gcode"
        gcode.write_text("G28\n")
        await live.start_job("3", gcode)
        await until(lambda: "job_completed" in rec.types(), "the live printer's job to complete")
        assert len(sim.starts()) == 1
        await until(lambda: mute_attempts() >= 2, "the silent printer given up on and tried again")
        for p in dead:
            assert p.status().state is DeviceState.DISCONNECTED and p.status().error is None
        assert not any(r.events for r in dead_recs)
    finally:
        for p in [*dead, live]:
            await p.close()
        silent.close()


async def test_the_console_and_malformed_reports(lan: BambuLan) -> None:
    garbage = MqttSession(lan.broker.internal_url, "garbage", on_message=_ignore, persistent=False)
    async with connected(lan, report_interval_s=0.1) as (_, printer, rec):
        garbage.start()
        await garbage.wait_connected(5)
        for payload in (b"not json", b"[1, 2]", json.dumps({"print": "x"}).encode()):
            await garbage.publish_confirmed(f"device/{SERIAL}/report", payload)
        await garbage.stop()
        await printer.send_gcode("c1", ["G28 ; home", "", "M104 S200"])
        output = rec.events[-1]
        assert output.type == "console_output" and output.command_id == "c1"  # type: ignore[union-attr]
        assert output.lines == ["[LINK] GcodeLine (1) l=3 from 0600 ok: G28",  # type: ignore[union-attr]
                                "[LINK] GcodeLine (2) l=9 from 0600 ok: M104 S200", "ok"]
        await until(lambda: printer.malformed == 2, "the malformed reports counted")
        assert printer.connected and printer.status().state is DeviceState.IDLE


async def test_the_sd_card_refuses_a_data_connection_without_tls_session_reuse(lan: BambuLan, tmp_path: Path) -> None:
    """The simulator is as strict as the printer's vsftpd, so the driver's upload proves it reuses the session."""
    lan.add(SERIAL)
    await lan.start()

    class WithoutReuse(bambu_ftps.ImplicitFTPS):
        def ntransfercmd(self, cmd: str, rest: Any = None) -> Any:
            conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
            return self.context.wrap_socket(conn, server_hostname=self.server_name), size

    port = BambuAddress.parse(lan.url(SERIAL)).ftps_port
    ftp = WithoutReuse(pinned_context(lan.certificate(SERIAL), SERIAL), SERIAL, 10)

    def store() -> None:
        ftp.connect("127.0.0.1", port)
        ftp.login("bblp", DEFAULT_ACCESS_CODE)
        ftp.prot_p()
        ftp.storbinary("STOR x.gcode", io.BytesIO(b"G28\n"))

    with pytest.raises(ftplib.Error):
        await asyncio.to_thread(store)
    ftp.close()
    assert lan.ftps(SERIAL).refused_data == 1


def count_sessions(printer: BambuPrinter) -> Any:
    calls = [0]
    session = printer.session

    async def counted() -> None:
        calls[0] += 1
        await session()

    printer.session = counted  # type: ignore[method-assign]
    return lambda: calls[0]


async def _ignore(*_: Any) -> None:
    pass


async def test_a_whole_print_with_its_events_in_the_hub(private_mosquitto, lan: BambuLan, tmp_path: Path) -> None:
    """Hub and agent as in a farm: upload → start → progress → pause → resume → complete; a cancel; an e-stop."""
    sim = lan.add(SERIAL, print_s=4.0, report_interval_s=0.2)
    await lan.start()
    hub = Hub(hub_config(tmp_path / "hub", private_mosquitto.url))
    await hub.start()
    config = AgentConfig.model_validate({
        "node_id": "bambu-node", "mqtt": {"url": private_mosquitto.url}, "storage": {"dir": tmp_path / "agent"},
        "hub": {"token": AGENT_TOKEN}, "telemetry_interval_s": 0.5,
        "devices": [{"id": "x1c-1", "driver": "bambu", "url": lan.url(SERIAL), "serial": SERIAL,
                     "access_code": DEFAULT_ACCESS_CODE, "ca_file": str(lan.certificate(SERIAL))}]})
    agent = Agent(config)
    await agent.start()
    api = Api(hub.http_url)
    try:
        sha = await api.upload(ring_tower(height_mm=0.4))
        job = await api.submit(sha, name="ring")
        await api.wait_job(job["id"], {"printing"}, timeout=30)
        await until(lambda: sim.status["gcode_state"] == "RUNNING", "the printer running")
        async with api.http.post(f"{api.base}/api/v1/jobs/{job['id']}/pause") as r:
            assert r.status == 202, await r.text()
        await api.wait_job(job["id"], {"paused"}, timeout=15)
        async with api.http.post(f"{api.base}/api/v1/jobs/{job['id']}/resume") as r:
            assert r.status == 202, await r.text()
        done = await api.wait_job(job["id"], {"completed", "failed", "cancelled"}, timeout=30)
        assert done["state"] == "completed", done
        assert (sim.sdcard / f"farmhand-job-{job['id']}.gcode").read_text() == ring_tower(height_mm=0.4)

        second = await api.submit(sha, name="ring again")
        await api.wait_job(second["id"], {"printing"}, timeout=30)
        async with api.http.post(f"{api.base}/api/v1/jobs/{second['id']}/cancel") as r:
            assert r.status in (200, 202), await r.text()
        cancelled = await api.wait_job(second["id"], {"completed", "failed", "cancelled"}, timeout=30)
        assert cancelled["state"] == "cancelled", cancelled

        third = await api.submit(sha, name="ring, stopped")
        await api.wait_job(third["id"], {"printing"}, timeout=30)
        async with api.http.post(f"{api.base}/api/v1/devices/bambu-node/x1c-1/emergency-stop") as r:
            assert r.status == 202, await r.text()
        stopped = await api.wait_job(third["id"], {"completed", "failed", "cancelled"}, timeout=30)
        assert stopped["state"] in ("cancelled", "failed"), stopped
        assert sim.status["gcode_state"] == "FAILED" and sim.status["nozzle_target_temper"] == 0

        await until(lambda: agent.outbox.pending() == 0, "the agent's spool to drain")
        types = [t for _, t in hub_events(tmp_path / "hub", "bambu-node") if t.startswith("job_")]
        first_job = types[:types.index("job_completed") + 1]
        assert [t for t in first_job if t != "job_progress"] == ["job_started", "job_paused", "job_resumed",
                                                                  "job_completed"]
        assert "job_progress" in first_job
        assert types.count("job_started") == 3 and len(sim.starts()) == 3
    finally:
        await api.close()
        await agent.stop()
        await hub.stop()


async def test_a_print_the_printer_refuses_is_rejected_in_its_words(lan: BambuLan, tmp_path: Path) -> None:
    async with connected(lan, report_interval_s=0.1) as (sim, printer, rec):
        sim.start_error = 0x05004006
        with pytest.raises(CommandRejected, match="0500_4006: There is not enough free storage space"):
            await printer.start_job("5", project_3mf(tmp_path / "part"))
        assert not rec.events and printer.status().job_id is None
        await printer.start_job("6", project_3mf(tmp_path / "part"))  # the next one prints
        assert rec.types() == ["job_started"]
