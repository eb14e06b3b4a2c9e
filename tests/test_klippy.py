"""The serial driver against the real Klippy's pseudo-terminal (no printer: see tests/klippykit.py).

What Klippy ends at is read from its own API server, not from what we sent:
the extruder's position after relative moves of distinct lengths is a
checksum of which lines ran, and how often.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.devices.base import CommandRejected
from agent.devices.serial_gcode import SerialGcodeDevice
from farmhand.print_cmd import EXIT_FAILED, EXIT_OK, print_file
from protocol.messages import ConsoleOutput, DeviceError, DeviceState, JobCompleted, JobFailed
from tests import klippykit
from tests.klippykit import Klippy
from tests.serial_support import Recorder, until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not klippykit.available(), reason="Klippy is not installed: run scripts/peers/klippy.sh"),
]


@pytest.fixture
def klippy(tmp_path: Path) -> Iterator[Klippy]:
    with klippykit.running_klippy(tmp_path / "klippy") as running:
        yield running


def extrusions(count: int, start: int = 0) -> tuple[list[str], float]:
    """``count`` relative extruder moves whose lengths differ (1 to 97 µm): a lost or doubled line changes the sum."""
    lines = [f"G1 E{(i % 97 + 1) / 1000:.3f} F6000" for i in range(start, start + count)]
    return lines, sum((i % 97 + 1) / 1000 for i in range(start, start + count))


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def extruder_position(klippy: Klippy) -> float:
    return float(klippy.query({"toolhead": ["position"]})["toolhead"]["position"][3])


async def test_a_file_reaches_klippy_exactly_once(klippy: Klippy, tmp_path: Path) -> None:
    moves, total = extrusions(12_000)
    job = write(tmp_path / "job.gcode", ["; a comment Klippy never sees", "M83", *moves])
    result = await print_file(str(klippy.pty), job, profile="klipper")
    assert result.exit_code == EXIT_OK, result.summary()
    assert result.lines_done == 12_001 and not result.errors
    assert extruder_position(klippy) == pytest.approx(total, abs=1e-6)


async def test_m112_in_a_file_fails_the_job_in_klippys_words_and_nothing_after_it_runs(
        klippy: Klippy, tmp_path: Path) -> None:
    before, total = extrusions(3_000)
    # Each move after the M112 would add a metre: any one that ran shows.
    job = write(tmp_path / "stop.gcode", ["M83", *before, "M112", *["G1 E1000 F6000"] * 2_000])
    result = await print_file(str(klippy.pty), job, profile="klipper")
    assert result.exit_code == EXIT_FAILED
    assert result.reason.startswith("Shutdown due to M112 command")
    # Said once, with the lines already on their way counted, not one warning per line.
    assert [e for e in result.errors if "M112" in e] == [result.reason]
    assert klippy.state() == "shutdown"
    assert extruder_position(klippy) == pytest.approx(total, abs=1e-6)


async def test_an_unknown_command_is_reported_with_the_line_and_the_job_goes_on(
        klippy: Klippy, tmp_path: Path) -> None:
    first, a = extrusions(500)
    then, b = extrusions(500, start=500)
    job = write(tmp_path / "unknown.gcode", ["M83", *first, "FROBNICATE SPEED=3", *then])
    rec = Recorder()
    device = SerialGcodeDevice("klippy-1", rec, port=str(klippy.pty), profile="klipper", poll_interval_s=60)
    await device.open()
    try:
        await until(lambda: device.state is DeviceState.IDLE)
        assert not device.connection.wire_paced  # a pty: answers are read as they come
        await device.start_job("job-unknown", job)
        await until(rec.ended)
    finally:
        await device.close()
    assert rec.of(JobCompleted), rec.events
    [refusal] = rec.of(DeviceError)
    assert refusal.job_id == "job-unknown" and refusal.command == "FROBNICATE SPEED=3"
    assert 'Unknown command:"FROBNICATE"' in refusal.message and "command 502 of the job" in refusal.message
    assert extruder_position(klippy) == pytest.approx(a + b, abs=1e-6)


async def test_after_a_shutdown_firmware_restart_from_the_console_brings_the_printer_back(
        klippy: Klippy, tmp_path: Path) -> None:
    rec = Recorder()
    device = SerialGcodeDevice("klippy-2", rec, port=str(klippy.pty), profile="klipper", poll_interval_s=0.5)
    await device.open()
    try:
        await until(lambda: device.state is DeviceState.IDLE)
        await device.emergency_stop()
        await until(lambda: klippy.state() == "shutdown")
        await until(lambda: device.state is DeviceState.ERROR)
        # Halted, Klippy still answers (the temperature polls go on): the device must not take that for ready.
        await until(lambda: device.engine.bytes_sent > 20, timeout=5)
        assert device.state is DeviceState.ERROR
        with pytest.raises(CommandRejected, match="error"):
            await device.send_gcode("c-1", ["G1 E1"])
        await device.send_gcode("c-2", ["FIRMWARE_RESTART"])
        await until(lambda: device.state is DeviceState.IDLE)
        assert klippy.state() == "ready"
        moves, total = extrusions(300)
        await device.start_job("after-restart", write(tmp_path / "after.gcode", ["M83", *moves]))
        await until(rec.ended)
    finally:
        await device.close()
    assert [e.job_id for e in rec.of(JobCompleted)] == ["after-restart"] and not rec.of(JobFailed)
    assert [c.command_id for c in rec.of(ConsoleOutput)] == ["c-2"]
    # FIRMWARE_RESTART starts Klippy afresh: the extruder counts from zero.
    assert extruder_position(klippy) == pytest.approx(total, abs=1e-6)


def test_the_shipped_mcu_dictionary_is_what_its_generator_writes() -> None:
    import json
    import runpy

    generator = runpy.run_path(str(klippykit.DICTIONARY.parent / "make_dictionary.py"))
    assert json.loads(klippykit.DICTIONARY.read_text()) == generator["dictionary"]()
