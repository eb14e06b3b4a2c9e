"""The serial G-code driver streaming to the virtual printer over a real pseudo-terminal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.devices.base import CommandRejected
from agent.devices.serial_gcode import SerialGcodeDevice
from agent.serial.gcode import prepare_file
from agent.serial.profiles import load_profile
from farmhand.sample_gcode import ring_tower
from farmhand.sim.printer import VirtualPrinter
from protocol.messages import (
    DeviceError,
    DeviceState,
    DeviceStatus,
    Event,
    JobCompleted,
    JobFailed,
    JobPaused,
    JobResumed,
    JobStarted,
    Telemetry,
)

pytestmark = pytest.mark.integration

MARLIN = load_profile("marlin2")
HOST_POLL = "M105"


class Recorder:
    """The smallest Emitter: keeps what the driver emits, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.statuses: list[DeviceStatus] = []
        self.readings: list[Telemetry] = []

    def event(self, body: Event) -> None:
        self.events.append(body)

    def status(self, status: DeviceStatus) -> None:
        self.statuses.append(status)

    def telemetry(self, telemetry: Telemetry) -> None:
        self.readings.append(telemetry)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


async def until(condition: Callable[[], object], timeout: float = 30.0) -> None:
    """Wait for a condition; the timeout only stops a broken test from hanging."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def job_commands(path: Path) -> list[str]:
    return [c.decode() for c in prepare_file(path).commands]


def after_last_sync(printer: VirtualPrinter) -> list[str]:
    """What the printer ran since the job's ``M110 N0``, checking every numbered line ran once, in order."""
    ran = printer.executed
    start = max(i for i, (n, c) in enumerate(ran) if (n, c) == (0, "M110 N0"))
    tail = ran[start:]
    assert [n for n, _ in tail] == list(range(len(tail))), "a line was skipped or ran twice"
    return [c for _, c in tail if c != HOST_POLL]


def ran_lately(printer: VirtualPrinter, command: str) -> bool:
    """Whether ``command`` is among the last few the printer ran (a temperature poll may follow it)."""
    return command in [c for _, c in printer.executed[-3:]]


def moves(n: int, *, length_mm: float = 10.0) -> str:
    """``n`` back-and-forth moves of ``length_mm`` at 100 mm/s."""
    return "".join(f"G1 X{length_mm * (i % 2):.1f} Y0 F6000\n" for i in range(n))


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
                            poll_interval_s=0.2)
    await dev.open()
    await until(lambda: dev.state is DeviceState.IDLE)
    yield dev, rec
    await dev.close()


FAST_NOISY = {"speed_factor": 1e5, "noise": 0.01}
SLOW = {"speed_factor": 50.0}  # 10 mm at 100 mm/s takes 2 ms: a 2000-move job runs for seconds


@pytest.mark.parametrize("printer", [FAST_NOISY], indirect=True)
async def test_streams_a_part_over_a_noisy_line_exactly_once_in_order(
    printer: VirtualPrinter, device: tuple[SerialGcodeDevice, Recorder], tmp_path: Path
) -> None:
    dev, rec = device
    path = tmp_path / "ring.gcode"
    path.write_text(ring_tower(height_mm=6.0))
    commands = job_commands(path)
    assert len(commands) > 2500

    await dev.start_job("job-1", path)
    await until(lambda: rec.of(JobCompleted) or rec.of(JobFailed))

    assert after_last_sync(printer) == ["M110 N0", *commands, *MARLIN.finish_script]
    assert printer.stats.corrupted > 0 and printer.stats.overruns == 0
    started, = rec.of(JobStarted)
    done, = rec.of(JobCompleted)
    assert (started.job_id, started.lines_total) == ("job-1", len(commands))
    assert (done.job_id, done.lines) == ("job-1", len(commands)) and done.resends > 0 and done.duration_s > 0
    assert [s.state for s in rec.statuses][-2:] == [DeviceState.PRINTING, DeviceState.IDLE]
    assert dev.status().job_id is None and not rec.of(JobFailed)


async def test_knows_the_firmware_and_reports_temperatures(
    printer: VirtualPrinter, device: tuple[SerialGcodeDevice, Recorder]
) -> None:
    dev, rec = device
    await until(lambda: dev.info().firmware and rec.readings)
    info = dev.info()
    assert info.kind == "serial_gcode" and info.model == "virtual"
    assert info.firmware is not None and info.firmware.startswith("Marlin 2.1.2")
    assert {"AUTOREPORT_TEMP", "EMERGENCY_PARSER"} <= set(info.capabilities)
    assert {"T0", "B"} <= set(rec.readings[-1].temperatures)
    assert dev.status().temperatures["T0"].target == 0.0


@pytest.mark.parametrize("printer", [SLOW], indirect=True)
async def test_cancel_stops_streaming_and_runs_the_cancel_script(
    printer: VirtualPrinter, device: tuple[SerialGcodeDevice, Recorder], tmp_path: Path
) -> None:
    dev, rec = device
    path = tmp_path / "long.gcode"
    path.write_text(moves(2000))
    await dev.start_job("job-2", path)
    await until(lambda: dev.engine.lines_done >= 100)
    await dev.cancel()

    failed, = rec.of(JobFailed)
    assert failed.job_id == "job-2" and failed.cancelled
    assert dev.state is DeviceState.IDLE
    await until(lambda: ran_lately(printer, MARLIN.cancel_script[-1]))
    ran = after_last_sync(printer)
    job_part = ran[1:len(ran) - len(MARLIN.cancel_script)]
    assert ran[-len(MARLIN.cancel_script):] == MARLIN.cancel_script
    assert job_part == job_commands(path)[:len(job_part)] and 100 <= len(job_part) < 2000
    assert not rec.of(JobCompleted)


@pytest.mark.parametrize("printer", [SLOW], indirect=True)
async def test_a_halted_printer_fails_the_job_in_its_own_words(
    printer: VirtualPrinter, device: tuple[SerialGcodeDevice, Recorder], tmp_path: Path
) -> None:
    dev, rec = device
    path = tmp_path / "long.gcode"
    path.write_text(moves(2000))
    await dev.start_job("job-3", path)
    await until(lambda: dev.engine.lines_done >= 50)
    printer.inject_kill("Printer halted. kill() called!")
    await until(lambda: rec.of(JobFailed))

    failed, = rec.of(JobFailed)
    assert failed.reason == "Printer halted. kill() called!" and not failed.cancelled
    assert [e.message for e in rec.of(DeviceError)] == ["Printer halted. kill() called!"]
    status = dev.status()
    assert status.state is DeviceState.ERROR and status.error == "Printer halted. kill() called!"
    with pytest.raises(CommandRejected, match="printer is error: Printer halted"):
        await dev.start_job("job-4", path)


@pytest.mark.parametrize("printer", [SLOW], indirect=True)
async def test_pause_parks_after_the_lines_in_flight_and_resume_finishes_the_job(
    printer: VirtualPrinter, device: tuple[SerialGcodeDevice, Recorder], tmp_path: Path
) -> None:
    dev, rec = device
    path = tmp_path / "long.gcode"
    path.write_text(moves(600))
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


async def test_refuses_a_job_file_it_cannot_send_and_stays_idle(
    device: tuple[SerialGcodeDevice, Recorder], tmp_path: Path
) -> None:
    dev, rec = device
    path = tmp_path / "bad.gcode"
    path.write_text("G28\nM117 50*50\n")
    with pytest.raises(CommandRejected, match=r"bad.gcode:2: '\*' is reserved"):
        await dev.start_job("job-6", path)
    with pytest.raises(CommandRejected, match="cannot read the job file"):
        await dev.start_job("job-7", tmp_path / "missing.gcode")
    assert dev.state is DeviceState.IDLE and not rec.events


@pytest.mark.parametrize("printer", [SLOW], indirect=True)
async def test_emergency_stop_halts_the_printer(
    printer: VirtualPrinter, device: tuple[SerialGcodeDevice, Recorder], tmp_path: Path
) -> None:
    dev, rec = device
    path = tmp_path / "long.gcode"
    path.write_text(moves(2000))
    await dev.start_job("job-8", path)
    with pytest.raises(CommandRejected, match="cannot start a job: the printer is printing"):
        await dev.start_job("job-9", path)
    await dev.emergency_stop()
    assert dev.state is DeviceState.ERROR
    failed, = rec.of(JobFailed)
    assert failed.reason == "emergency stop"
    await until(lambda: printer.halted)


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
        path = tmp_path / "long.gcode"
        path.write_text(moves(500))
        await dev.start_job("job-11", path)
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
        path = tmp_path / "short.gcode"
        path.write_text(moves(300))
        await dev.start_job("job-12", path)
        await until(lambda: rec.of(JobCompleted))
    finally:
        await dev.close()
    ran = [(n, c) for n, c in printer.executed if c not in ("M105", "M115")]
    assert ran == [(None, c) for c in job_commands(path)] + [(None, "M400")]
