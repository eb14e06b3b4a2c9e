"""The serial G-code driver against the virtual printer over real pseudo-terminals.

Every behaviour of the host protocol is exercised here end to end: streaming
exactly once over a noisy wire, lost answers, silent and busy firmware,
halts, resets, capabilities, host actions, the SD card, the console, and
each firmware dialect.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.devices.base import CommandRejected
from agent.devices.serial_gcode import SerialGcodeDevice
from agent.serial.gcode import prepare_file
from agent.serial.profiles import bundled_profiles, load_profile
from farmhand.sample_gcode import ring_tower
from farmhand.sim.printer import VirtualPrinter
from protocol.messages import (
    ConsoleOutput,
    DeviceError,
    DeviceState,
    JobCompleted,
    JobFailed,
    JobPaused,
    JobProgress,
    JobResumed,
    JobStarted,
)
from tests.serial_support import Recorder, until

pytestmark = pytest.mark.integration

MARLIN = load_profile("marlin2")
HOST_QUERIES = ("M105", "M115", "M155", "M27")
"""What the host asks on its own between a job's lines."""
FAST = 1_000_000  # baud: paced like a UART, fast enough for a test


def job_commands(path: Path) -> list[str]:
    return [c.decode() for c in prepare_file(path).commands]


def after_last_sync(printer: VirtualPrinter) -> list[str]:
    """What the printer ran since the job's ``M110 N0``, checking every numbered line ran once, in order."""
    ran = printer.executed
    start = max(i for i, (n, c) in enumerate(ran) if (n, c) == (0, "M110 N0"))
    tail = [(n, c) for n, c in ran[start:] if n is not None]  # unnumbered: M108 sent out of band
    assert [n for n, _ in tail] == list(range(len(tail))), "a line was skipped or ran twice"
    return [c for _, c in tail if not c.startswith(HOST_QUERIES)]


def job_part(printer: VirtualPrinter) -> list[str]:
    """The job as the printer ran it, without the host's own questions (works without line numbers too)."""
    if any(n == 0 for n, _ in printer.executed):
        return after_last_sync(printer)[1:]
    return [c for _, c in printer.executed if not c.startswith((*HOST_QUERIES, "M110"))]


def ran_lately(printer: VirtualPrinter, command: str) -> bool:
    """Whether ``command`` is among the last few the printer ran (a temperature poll may follow it)."""
    return command in [c for _, c in printer.executed[-3:]]


def moves(n: int, *, length_mm: float = 10.0) -> str:
    """``n`` back-and-forth moves of ``length_mm`` at 100 mm/s."""
    return "".join(f"G1 X{length_mm * (i % 2):.1f} Y0 F6000\n" for i in range(n))


def write_job(tmp_path: Path, text: str, name: str = "job.gcode") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@asynccontextmanager
async def printer_and_device(tmp_path: Path, *, name: str = "printer0", sim: dict[str, Any] | None = None,
                             **device: Any) -> AsyncIterator[tuple[VirtualPrinter, SerialGcodeDevice, Recorder]]:
    options = {"speed_factor": 1e5, "seed": 3, **(sim or {})}
    printer = VirtualPrinter(tmp_path / "tty" / name, **options)
    await printer.start()
    rec = Recorder()
    dev = SerialGcodeDevice(name.replace("printer", "printer-"), rec, port=str(printer.link),
                            **{"baud": 250000, "model": "virtual", "poll_interval_s": 0.2,
                               "profile": printer.profile.name, **device})
    rec.device = dev
    await dev.open()
    try:
        await until(lambda: dev.state is DeviceState.IDLE)
        yield printer, dev, rec
    finally:
        await dev.close()
        await printer.stop()


@pytest.fixture
async def printer(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[VirtualPrinter]:
    options = getattr(request, "param", {})
    p = VirtualPrinter(tmp_path / "tty" / "printer0", seed=3, **options)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def device(printer: VirtualPrinter) -> AsyncIterator[tuple[SerialGcodeDevice, Recorder]]:
    rec = Recorder()
    dev = SerialGcodeDevice("printer-0", rec, port=str(printer.link), baud=250000, model="virtual",
                            profile=printer.profile.name, poll_interval_s=0.2)
    rec.device = dev
    await dev.open()
    await until(lambda: dev.state is DeviceState.IDLE)
    yield dev, rec
    await dev.close()


FAST_NOISY = {"speed_factor": 1e5, "noise": 0.01}
SLOW = {"speed_factor": 50.0}  # 10 mm at 100 mm/s takes 2 ms: a 2000-move job runs for seconds


# ----------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("printer", [FAST_NOISY], indirect=True)
async def test_streams_a_part_over_a_noisy_line_exactly_once_in_order(
    printer: VirtualPrinter, device: tuple[SerialGcodeDevice, Recorder], tmp_path: Path
) -> None:
    dev, rec = device
    path = write_job(tmp_path, ring_tower(height_mm=6.0), "ring.gcode")
    commands = job_commands(path)
    assert len(commands) > 2500

    await dev.start_job("job-1", path)
    await until(rec.ended)

    assert after_last_sync(printer) == ["M110 N0", *commands, *MARLIN.finish_script]
    assert printer.stats.corrupted > 0 and printer.stats.overruns == 0
    started, = rec.of(JobStarted)
    done, = rec.of(JobCompleted)
    assert (started.job_id, started.lines_total) == ("job-1", len(commands))
    assert (done.job_id, done.lines) == ("job-1", len(commands)) and done.resends > 0 and done.duration_s > 0
    assert [s.state for s in rec.statuses][-2:] == [DeviceState.PRINTING, DeviceState.IDLE]
    assert dev.status().job_id is None and not rec.of(JobFailed)


@pytest.mark.any_loop
@pytest.mark.parametrize("advanced_ok", [True, False], ids=["advanced-ok", "plain-ok"])
async def test_a_paced_wire_with_one_percent_noise_runs_every_line_once_and_never_overruns(
    tmp_path: Path, advanced_ok: bool
) -> None:
    sim = {"baud": FAST, "noise": 0.01, "advanced_ok": advanced_ok}
    async with printer_and_device(tmp_path, sim=sim, baud=FAST) as (printer, dev, rec):
        path = write_job(tmp_path, moves(1500, length_mm=0.5))
        await dev.start_job("job-paced", path)
        await until(rec.ended)
        assert rec.of(JobCompleted) and printer.stats.corrupted > 5
        assert after_last_sync(printer) == ["M110 N0", *job_commands(path), "M400"]
        # The planner credit lets many more bytes than the buffer holds be in flight; none is ever lost.
        assert printer.stats.overruns == 0


@pytest.mark.parametrize("dialect", bundled_profiles())
async def test_every_dialect_streams_a_job_exactly_once(tmp_path: Path, dialect: str) -> None:
    async with printer_and_device(tmp_path, sim={"profile": dialect, "baud": FAST}, baud=FAST) as (printer, dev, rec):
        path = write_job(tmp_path, moves(300))
        await dev.start_job("job-dialect", path)
        await until(rec.ended)
        assert rec.of(JobCompleted), rec.events
        assert job_part(printer)[-301:] == [*job_commands(path), "M400"]
        info = dev.info()
        assert info.firmware and info.firmware.split()[0] in printer.profile.emulation.firmware_name


@pytest.mark.any_loop
async def test_several_printers_stream_at_once(tmp_path: Path) -> None:
    async with (printer_and_device(tmp_path, name="printer1", sim={"baud": FAST, "advanced_ok": True}, baud=FAST) as a,
                printer_and_device(tmp_path, name="printer2", sim={"baud": FAST}, baud=FAST) as b,
                printer_and_device(tmp_path, name="printer3", sim={"baud": FAST, "profile": "prusa-mk3s"},
                                   baud=FAST) as c):
        path = write_job(tmp_path, moves(800, length_mm=1.0))
        for _, dev, _ in (a, b, c):
            await dev.start_job(f"job-{dev.id}", path)
        await until(lambda: all(rec.ended() for _, _, rec in (a, b, c)))
        for printer, _, rec in (a, b, c):
            assert rec.of(JobCompleted)
            assert after_last_sync(printer) == ["M110 N0", *job_commands(path), "M400"]


# ----------------------------------------------------------------------------- answers lost, late or never


def serial_threads(port: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"serial {port}"]


@pytest.mark.any_loop
async def test_on_the_agents_loop_a_port_has_one_reading_thread_that_ends_with_the_device(tmp_path: Path) -> None:
    on_agent_loop = hasattr(asyncio.get_running_loop(), "serial_lock")
    async with printer_and_device(tmp_path, sim=SLOW) as (printer, dev, rec):
        port = str(printer.link)
        await dev.start_job("job-thread", write_job(tmp_path, moves(300)))
        await until(lambda: dev.engine.lines_done >= 20)
        assert len(serial_threads(port)) == (1 if on_agent_loop else 0)
        await until(rec.ended)
        assert rec.of(JobCompleted)
        assert after_last_sync(printer) == ["M110 N0", *moves(300).splitlines(), *MARLIN.finish_script]
    await until(lambda: not serial_threads(port))


@pytest.mark.parametrize("advanced_ok", [True, False], ids=["advanced-ok", "plain-ok"])
async def test_lost_oks_are_recovered_and_nothing_runs_twice(tmp_path: Path, advanced_ok: bool) -> None:
    sim = {"advanced_ok": advanced_ok, "speed_factor": 2000.0}
    async with printer_and_device(tmp_path, sim=sim, answer_timeout_s=0.3) as (printer, dev, rec):
        path = write_job(tmp_path, moves(600))
        await dev.start_job("job-lost", path)
        await until(lambda: dev.engine.lines_done >= 100)
        printer.lose_oks(3)
        await until(rec.ended)
        assert rec.of(JobCompleted) and printer.stats.oks_lost == 3
        assert after_last_sync(printer) == ["M110 N0", *job_commands(path), "M400"]
        assert dev.engine.lost_oks >= 1


async def test_a_busy_firmware_is_not_taken_for_a_silent_one(tmp_path: Path) -> None:
    # Keep-alives every 2 simulated seconds are 0.2 s here; the host would probe after 0.5 s of silence.
    async with printer_and_device(tmp_path, sim={"speed_factor": 10.0}, answer_timeout_s=0.5) as (printer, dev, rec):
        path = write_job(tmp_path, "G4 S12\nG1 X1\n")
        await dev.start_job("job-busy", path)
        await until(rec.ended)
        assert rec.of(JobCompleted) and dev.connection.probes_sent == 0


async def test_a_silent_firmware_is_probed_then_the_job_fails_saying_so(tmp_path: Path) -> None:
    async with printer_and_device(tmp_path, sim=SLOW, answer_timeout_s=0.2) as (printer, dev, rec):
        await dev.start_job("job-silent", write_job(tmp_path, moves(2000)))
        await until(lambda: dev.engine.lines_done >= 50)
        printer.inject_hang()
        await until(rec.ended)
        failed, = rec.of(JobFailed)
        assert failed.reason.startswith("the printer stopped answering") and "3 probes unanswered" in failed.reason
        assert dev.connection.probes_sent == 3 and dev.state is DeviceState.ERROR
        assert [e.message for e in rec.of(DeviceError)] == [failed.reason]


# ----------------------------------------------------------------------------- the firmware stops or restarts


@pytest.mark.any_loop
@pytest.mark.parametrize("fault", ["kill", "thermal runaway"])
@pytest.mark.parametrize("printer", [SLOW], indirect=True)
async def test_a_halted_printer_fails_the_job_in_its_own_words(
    printer: VirtualPrinter, device: tuple[SerialGcodeDevice, Recorder], tmp_path: Path, fault: str
) -> None:
    dev, rec = device
    path = write_job(tmp_path, moves(2000))
    await dev.start_job("job-3", path)
    await until(lambda: dev.engine.lines_done >= 50)
    if fault == "kill":
        printer.inject_kill("Printer halted. kill() called!")
        words = "Printer halted. kill() called!"
    else:
        printer.inject_thermal_runaway()
        words = "Thermal Runaway, system stopped! Heater_ID: 0"
    await until(lambda: rec.of(JobFailed))

    failed, = rec.of(JobFailed)
    assert failed.reason == words and not failed.cancelled
    assert [e.message for e in rec.of(DeviceError)] == [words]
    status = dev.status()
    assert status.state is DeviceState.ERROR and status.error == words
    with pytest.raises(CommandRejected, match="printer is error: "):
        await dev.start_job("job-4", path)


@pytest.mark.any_loop
async def test_a_firmware_reset_fails_the_job_and_the_printer_comes_back(tmp_path: Path) -> None:
    async with printer_and_device(tmp_path, sim=SLOW) as (printer, dev, rec):
        path = write_job(tmp_path, moves(2000))
        await dev.start_job("job-reset", path)
        await until(lambda: dev.engine.lines_done >= 50)
        printer.inject_reset()
        await until(lambda: rec.of(JobFailed))
        failed, = rec.of(JobFailed)
        assert failed.reason.startswith("printer reset") and rec.of(DeviceError)
        # Resynchronised: a new job starts from line 1 and runs whole.
        await until(lambda: dev.state is DeviceState.IDLE and not dev.connection.greeting)
        short = write_job(tmp_path, moves(20), "short.gcode")
        await dev.start_job("job-after-reset", short)
        await until(lambda: rec.of(JobCompleted))
        assert after_last_sync(printer) == ["M110 N0", *job_commands(short), "M400"]


# ----------------------------------------------------------------------------- what the firmware can do


async def test_knows_the_firmware_and_its_capabilities_and_announces_them(
    printer: VirtualPrinter, device: tuple[SerialGcodeDevice, Recorder]
) -> None:
    dev, rec = device
    await until(lambda: dev.info().firmware and rec.readings)
    info = dev.info()
    assert info.kind == "serial_gcode" and info.model == "virtual"
    assert info.firmware is not None and info.firmware.startswith("Marlin 2.1.2.1")
    assert {"AUTOREPORT_TEMP", "EMERGENCY_PARSER"} <= set(info.capabilities)
    # A status goes out once M115 is answered, so the node can announce the firmware with the device.
    assert any(i.firmware and "EMERGENCY_PARSER" in i.capabilities for i in rec.infos)
    assert {"T0", "B"} <= set(rec.readings[-1].temperatures)
    assert dev.status().temperatures["T0"].target == 0.0


async def test_autoreport_replaces_polling_where_the_firmware_has_it(tmp_path: Path) -> None:
    async with printer_and_device(tmp_path) as (marlin, _, _):
        await until(lambda: any(c.startswith("M155") for _, c in marlin.executed))
        await asyncio.sleep(0.7)  # three poll periods
        assert [c for _, c in marlin.executed].count("M105") <= 1 and (None, "M155 S1") not in marlin.executed
        assert any(c == "M155 S1" for _, c in marlin.executed)
    async with printer_and_device(tmp_path, name="printer9", sim={"profile": "smoothieware"}) as (smoothie, _, _):
        await until(lambda: [c for _, c in smoothie.executed].count("M105") >= 3)
        assert not any(c.startswith("M155") for _, c in smoothie.executed)


# ----------------------------------------------------------------------------- cancel, pause, emergency stop


@pytest.mark.parametrize("printer", [SLOW], indirect=True)
async def test_cancel_stops_streaming_and_runs_the_cancel_script(
    printer: VirtualPrinter, device: tuple[SerialGcodeDevice, Recorder], tmp_path: Path
) -> None:
    dev, rec = device
    path = write_job(tmp_path, moves(2000), "long.gcode")
    await dev.start_job("job-2", path)
    await until(lambda: dev.engine.lines_done >= 100)
    await dev.cancel()

    failed, = rec.of(JobFailed)
    assert failed.job_id == "job-2" and failed.cancelled
    assert dev.state is DeviceState.IDLE
    await until(lambda: ran_lately(printer, MARLIN.cancel_script[-1]))
    ran = after_last_sync(printer)
    job_part_ran = ran[1:len(ran) - len(MARLIN.cancel_script)]
    assert ran[-len(MARLIN.cancel_script):] == MARLIN.cancel_script
    assert job_part_ran == job_commands(path)[:len(job_part_ran)] and 100 <= len(job_part_ran) < 2000
    assert not rec.of(JobCompleted)


async def test_cancel_during_heat_up_breaks_the_wait_at_once(tmp_path: Path) -> None:
    # At real speed, heating the hotend to 215 °C takes minutes.
    async with printer_and_device(tmp_path, sim={"speed_factor": 1.0}) as (printer, dev, rec):
        await dev.start_job("job-heat", write_job(tmp_path, "M104 S215\nM109 S215\n" + moves(50)))
        await until(lambda: printer.temperatures["T0"][1] == 215.0 and dev.engine.in_flight_command(("M109",)))
        await dev.cancel()
        await until(lambda: printer.temperatures["T0"][1] == 0.0)  # the cancel script's M104 S0 ran
        assert (None, "M108") in printer.executed  # sent out of band, past the queue
        assert printer.temperatures["T0"][0] < 100.0 and rec.of(JobFailed)[0].cancelled


@pytest.mark.parametrize("printer", [SLOW], indirect=True)
async def test_pause_parks_after_the_lines_in_flight_and_resume_finishes_the_job(
    printer: VirtualPrinter, device: tuple[SerialGcodeDevice, Recorder], tmp_path: Path
) -> None:
    dev, rec = device
    path = write_job(tmp_path, moves(600), "long.gcode")
    await dev.start_job("job-5", path)
    await until(lambda: dev.engine.lines_done >= 100)
    await dev.pause()
    assert dev.state is DeviceState.PAUSED and rec.of(JobPaused)
    with pytest.raises(CommandRejected, match="cannot pause: the printer is paused"):
        await dev.pause()
    await until(lambda: ran_lately(printer, MARLIN.pause_script[-1]))
    await dev.resume()
    await until(lambda: rec.of(JobCompleted))

    assert rec.of(JobResumed) and not rec.of(JobFailed)
    ran = after_last_sync(printer)
    park = ran.index(MARLIN.pause_script[0])
    script = MARLIN.pause_script + MARLIN.resume_script
    assert ran[park:park + len(script)] == script
    assert ran[1:park] + ran[park + len(script):-1] == job_commands(path)


@pytest.mark.parametrize("printer", [SLOW], indirect=True)
async def test_emergency_stop_halts_the_printer_at_once(
    printer: VirtualPrinter, device: tuple[SerialGcodeDevice, Recorder], tmp_path: Path
) -> None:
    dev, rec = device
    path = write_job(tmp_path, moves(2000), "long.gcode")
    await dev.start_job("job-8", path)
    with pytest.raises(CommandRejected, match="cannot start a job: the printer is printing"):
        await dev.start_job("job-9", path)
    await dev.emergency_stop()
    assert dev.state is DeviceState.ERROR
    failed, = rec.of(JobFailed)
    assert failed.reason == "emergency stop"
    await until(lambda: printer.halted)


async def test_emergency_stop_without_the_emergency_parser_goes_next_in_line(tmp_path: Path) -> None:
    async with printer_and_device(tmp_path, sim={**SLOW, "profile": "prusa-mk3s"}) as (printer, dev, rec):
        assert not dev.connection.emergency_parser
        await dev.start_job("job-estop", write_job(tmp_path, moves(2000)))
        await until(lambda: dev.engine.lines_done >= 20)
        await dev.emergency_stop()
        await until(lambda: printer.halted)
        numbered = [(n, c) for n, c in printer.executed if n is not None]
        assert numbered[-1][1] == "M112" and dev.state is DeviceState.ERROR


# ----------------------------------------------------------------------------- the printer asks the host


@pytest.mark.parametrize("printer", [SLOW], indirect=True)
async def test_the_printers_buttons_pause_resume_and_cancel_the_job(
    printer: VirtualPrinter, device: tuple[SerialGcodeDevice, Recorder], tmp_path: Path
) -> None:
    dev, rec = device
    await dev.start_job("job-buttons", write_job(tmp_path, moves(2000)))
    await until(lambda: dev.engine.lines_done >= 20)
    printer.press("pause")
    await until(lambda: dev.state is DeviceState.PAUSED)
    assert rec.of(JobPaused)[0].reason == "paused on the printer"
    printer.press("resume")
    await until(lambda: dev.state is DeviceState.PRINTING)
    printer.press("cancel")
    await until(lambda: rec.of(JobFailed))
    assert rec.of(JobFailed)[0].cancelled and rec.of(JobResumed) and dev.state is DeviceState.IDLE


@pytest.mark.parametrize("printer", [SLOW], indirect=True)
async def test_filament_runout_pauses_the_job_and_raises_an_alert(
    printer: VirtualPrinter, device: tuple[SerialGcodeDevice, Recorder], tmp_path: Path
) -> None:
    dev, rec = device
    await dev.start_job("job-runout", write_job(tmp_path, moves(2000)))
    await until(lambda: dev.engine.lines_done >= 20)
    printer.inject_runout()
    await until(lambda: dev.state is DeviceState.PAUSED)
    paused, = rec.of(JobPaused)
    assert paused.reason == "out of filament (T0)"
    assert [e.message for e in rec.of(DeviceError)] == ["filament runout (T0)"]
    await until(lambda: ran_lately(printer, MARLIN.pause_script[-1]))


# ----------------------------------------------------------------------------- progress, SD card, console


async def test_a_streaming_job_reports_its_progress_about_once_a_second(tmp_path: Path) -> None:
    async with printer_and_device(tmp_path, sim=SLOW) as (printer, dev, rec):
        await dev.start_job("job-progress", write_job(tmp_path, moves(3000)))
        await until(lambda: len(rec.of(JobProgress)) >= 2)
        reports = rec.of(JobProgress)
        done = [r.lines_done for r in reports]
        assert done == sorted(done) and done[0] < done[-1] < 3000
        assert all(r.job_id == "job-progress" and r.progress == pytest.approx(r.lines_done / 3000, abs=0.02)
                   for r in reports)
        # Once a second, not once per line: hundreds of lines were answered between two reports.
        assert done[-1] - done[0] > 100


async def test_m73_in_the_file_is_the_jobs_progress(tmp_path: Path) -> None:
    async with printer_and_device(tmp_path, sim=SLOW) as (printer, dev, rec):
        await dev.start_job("job-m73", write_job(tmp_path, moves(20) + "M73 P42 R9\n" + moves(2000)))
        await until(lambda: dev.engine.m73_percent is not None)
        assert dev.status().progress == pytest.approx(0.42)


async def test_prints_a_file_from_the_printers_sd_card(tmp_path: Path) -> None:
    files = {"PART.GCO": b"G28\n" + moves(50).encode(), "OTHER.GCO": b"G28\n"}
    async with printer_and_device(tmp_path, sim={"sd_files": files}) as (printer, dev, rec):
        listed = await dev.sd_files()
        assert {(f.name, f.size) for f in listed} == {(n, len(d)) for n, d in files.items()}
        with pytest.raises(CommandRejected, match="cannot open 'NOPE.GCO'"):
            await dev.start_sd_job("job-none", "NOPE.GCO")
        await dev.start_sd_job("job-sd", "PART.GCO")
        await until(rec.ended)
        assert rec.of(JobCompleted) and printer.card.executed == ["G28", *moves(50).splitlines()]
        assert rec.of(JobStarted)[0].lines_total is None


@pytest.mark.any_loop
async def test_the_console_runs_lines_between_jobs_and_returns_the_firmwares_words(tmp_path: Path) -> None:
    async with printer_and_device(tmp_path, sim=SLOW) as (printer, dev, rec):
        await dev.send_gcode("cmd-1", ["M105", "M114 ; where are we", "G28"])
        output, = rec.of(ConsoleOutput)
        assert output.command_id == "cmd-1"
        assert any(line.startswith("ok T:") for line in output.lines)
        assert any(line.startswith("X:") for line in output.lines) and output.lines[-1] == "ok"
        with pytest.raises(CommandRejected, match="reserved for checksums"):
            await dev.send_gcode("cmd-2", ["M117 a*b"])
        await dev.start_job("job-console", write_job(tmp_path, moves(2000)))
        with pytest.raises(CommandRejected, match="cannot run console commands: the printer is printing"):
            await dev.send_gcode("cmd-3", ["M105"])


# ----------------------------------------------------------------------------- refusals and the port


async def test_refuses_a_job_file_it_cannot_send_and_stays_idle(
    device: tuple[SerialGcodeDevice, Recorder], tmp_path: Path
) -> None:
    dev, rec = device
    path = write_job(tmp_path, "G28\nM117 50*50\n", "bad.gcode")
    with pytest.raises(CommandRejected, match=r"bad.gcode:2: '\*' is reserved"):
        await dev.start_job("job-6", path)
    with pytest.raises(CommandRejected, match="cannot read the job file"):
        await dev.start_job("job-7", tmp_path / "missing.gcode")
    assert dev.state is DeviceState.IDLE and not rec.events


@pytest.mark.any_loop
async def test_waits_for_an_unplugged_printer_and_notices_it_leaving(tmp_path: Path) -> None:
    link = tmp_path / "later"
    rec = Recorder()
    dev = SerialGcodeDevice("printer-1", rec, port=str(link), poll_interval_s=0.2)
    await dev.open()
    try:
        await asyncio.sleep(0.3)
        assert dev.state is DeviceState.DISCONNECTED
        with pytest.raises(CommandRejected, match="disconnected"):
            await dev.start_job("job-10", tmp_path / "x.gcode")
        printer = VirtualPrinter(link, speed_factor=20.0)
        await printer.start()
        await until(lambda: dev.state is DeviceState.IDLE)
        await dev.start_job("job-11", write_job(tmp_path, moves(500), "long.gcode"))
        await until(lambda: dev.engine.lines_done >= 10)
        await printer.stop()  # unplugged mid-job
        await until(lambda: dev.state is DeviceState.DISCONNECTED)
        failed, = rec.of(JobFailed)
        assert failed.job_id == "job-11" and failed.reason.startswith("lost the connection to the printer")
    finally:
        await dev.close()


@pytest.mark.parametrize("printer", [{"speed_factor": 1e5, "profile": "klipper"}], indirect=True)
async def test_a_profile_without_checksums_streams_plain_lines(printer: VirtualPrinter, tmp_path: Path) -> None:
    rec = Recorder()
    dev = SerialGcodeDevice("printer-2", rec, port=str(printer.link), profile="klipper", poll_interval_s=60)
    await dev.open()
    try:
        await until(lambda: dev.state is DeviceState.IDLE)
        path = write_job(tmp_path, moves(300), "short.gcode")
        await dev.start_job("job-12", path)
        await until(lambda: rec.of(JobCompleted))
    finally:
        await dev.close()
    ran = [(n, c) for n, c in printer.executed if c not in ("M105", "M115")]
    assert ran == [(None, c) for c in job_commands(path)] + [(None, "M400")]


async def test_the_node_announces_the_firmware_once_the_printer_has_said_it(tmp_path: Path, mosquitto_url: str) -> None:
    from agent.node import Agent
    from protocol import topics
    from tests.agent_support import Listener, wait_for
    from tests.farm import agent_config

    printer = VirtualPrinter(tmp_path / "tty" / "printer0", speed_factor=1e5)
    await printer.start()
    config = agent_config(tmp_path / "agent", mosquitto_url, {"mk3s-1": printer.link})
    topic = topics.node_state(config.node_id)
    async with Listener(mosquitto_url, topic) as listener:
        agent = Agent(config)
        await agent.start()
        try:
            await wait_for(lambda: any(b.online and b.devices[0].firmware for b in listener.bodies(topic)),
                           20, "a birth that names the firmware")
        finally:
            await agent.stop()
            await printer.stop()
            await listener.clear_retained(topic)
    announced = [b.devices[0] for b in listener.bodies(topic) if b.online][-1]
    assert announced.firmware is not None and announced.firmware.startswith("Marlin 2.1.2.1")
    assert "EMERGENCY_PARSER" in announced.capabilities


async def test_a_profile_can_ask_cancel_to_drop_the_planned_moves_at_once(tmp_path: Path) -> None:
    environ = {"FARMHAND_PROFILE_MARLIN2__CANCEL_QUICK_STOP": "true"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environ.items():
            patch.setenv(key, value)
        async with printer_and_device(tmp_path, sim=SLOW) as (printer, dev, rec):
            await dev.start_job("job-quick", write_job(tmp_path, moves(2000)))
            await until(lambda: dev.engine.lines_done >= 50)
            await dev.cancel()
            await until(lambda: ran_lately(printer, MARLIN.cancel_script[-1]))
            assert (None, "M410") in printer.executed and rec.of(JobFailed)[0].cancelled


async def test_a_resend_for_a_line_no_longer_kept_fails_the_job_clearly_and_the_printer_stays_usable(
    tmp_path: Path
) -> None:
    async with printer_and_device(tmp_path, sim=SLOW) as (printer, dev, rec):
        await dev.start_job("job-old", write_job(tmp_path, moves(3000)))
        await until(lambda: dev.engine.lines_done >= 1100)  # the host keeps the last 1024 lines
        printer.inject_resend_request(2)
        await until(lambda: rec.of(JobFailed))
        failed, = rec.of(JobFailed)
        assert "resend line 2, which is no longer in the host's history" in failed.reason
        assert rec.of(DeviceError) and dev.state is DeviceState.IDLE
        short = write_job(tmp_path, moves(10), "short.gcode")
        await dev.start_job("job-after", short)
        await until(lambda: rec.of(JobCompleted))


async def test_a_profile_can_keep_one_line_in_flight(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FARMHAND_PROFILE_MARLIN2__FLOW", "one")
        async with printer_and_device(tmp_path, sim={"baud": FAST}, baud=FAST) as (printer, dev, rec):
            path = write_job(tmp_path, moves(200))
            await dev.start_job("job-one", path)
            await until(rec.ended)
            assert rec.of(JobCompleted) and after_last_sync(printer) == ["M110 N0", *job_commands(path), "M400"]
            # Never more than one line's bytes waited in the printer's buffer.
            assert printer.stats.max_outstanding <= max(len(line) + 12 for line in job_commands(path))


async def test_a_waiting_repetier_is_asked_at_once_about_answers_it_owes(tmp_path: Path) -> None:
    # The answer to the job's sync is lost, so nothing more is sent; Repetier's "wait" (once a second while
    # idle) gives it away long before the answer timeout would.
    async with printer_and_device(tmp_path, sim={"profile": "repetier"}, answer_timeout_s=60.0) as (printer, dev, rec):
        path = write_job(tmp_path, moves(20))
        await until(lambda: not dev.engine.busy)
        printer.lose_oks(1)
        await dev.start_job("job-wait", path)
        await until(rec.ended)
        assert rec.of(JobCompleted) and dev.connection.probes_sent >= 1 and dev.engine.lost_oks >= 1
        assert job_part(printer)[-21:] == [*job_commands(path), "M400"]
