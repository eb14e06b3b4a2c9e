"""The virtual printer over a real pseudo-terminal, driven by hand the way a host would."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import serial_asyncio

from agent.serial.gcode import frame_text
from farmhand.sim.printer import UartClock, VirtualPrinter

pytestmark = pytest.mark.integration


class Port:
    """A bare serial client: send raw bytes, read lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, link: Path, banner: str | None = "start") -> Port:
        reader, writer = await serial_asyncio.open_serial_connection(url=str(link), baudrate=115200)
        port = cls(reader, writer)
        if banner is not None:
            await port.until(banner)
        await port.command("M110 N0")  # past the banner
        return port

    def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() + b"\n" if isinstance(data, str) else data)

    async def line(self) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), 10)
        return raw.decode().strip()

    async def until(self, prefix: str) -> list[str]:
        """Every line up to and including the first that starts with ``prefix``."""
        seen = []
        while True:
            seen.append(await self.line())
            if seen[-1].startswith(prefix):
                return seen

    async def command(self, data: bytes | str) -> list[str]:
        self.send(data)
        return await self.until("ok")

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def printer(tmp_path: Path) -> AsyncIterator[VirtualPrinter]:
    p = VirtualPrinter(tmp_path / "printer0", speed_factor=1000.0)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def port(printer: VirtualPrinter) -> AsyncIterator[Port]:
    p = await Port.open(printer.link)
    yield p
    p.close()


async def test_link_is_a_pty_and_goes_away_on_stop(tmp_path: Path) -> None:
    p = VirtualPrinter(tmp_path / "tty" / "p")
    await p.start()
    assert os.path.islink(p.link) and os.readlink(p.link).startswith("/dev/pts/")
    await p.stop()
    assert not os.path.lexists(p.link)


async def test_greets_with_a_start_banner_on_open(printer: VirtualPrinter) -> None:
    reader, writer = await serial_asyncio.open_serial_connection(url=str(printer.link), baudrate=115200)
    try:
        first = (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
        assert first == "start"
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"echo:")
    finally:
        writer.close()
    assert printer.stats.connections == 1


async def test_m115_reports_firmware_and_capabilities(port: Port) -> None:
    lines = await port.command("M115")
    assert lines[0].startswith("FIRMWARE_NAME:") and "PROTOCOL_VERSION:1.0" in lines[0]
    assert "MACHINE_TYPE:Farmhand Virtual Printer" in lines[0]
    assert "Cap:AUTOREPORT_TEMP:1" in lines and "Cap:EMERGENCY_PARSER:1" in lines
    assert lines[-1] == "ok"


async def test_m105_answers_with_temperatures_on_the_ok(port: Port) -> None:
    lines = await port.command("M105")
    assert len(lines) == 1 and lines[0].startswith("ok T:") and " B:" in lines[0] and "@:" in lines[0]


async def test_numbered_lines_run_in_order_with_their_numbers(printer: VirtualPrinter, port: Port) -> None:
    for n, command in enumerate(["M110 N0", "G28", "G1 X10 Y10 F3000", "M400"]):
        assert (await port.command(frame_text(n, command)))[-1] == "ok"
    assert printer.executed[-4:] == [(0, "M110 N0"), (1, "G28"), (2, "G1 X10 Y10 F3000"), (3, "M400")]


async def test_a_checksum_mismatch_asks_for_the_line_again(printer: VirtualPrinter, port: Port) -> None:
    await port.command(frame_text(0, "M110 N0"))
    await port.command(frame_text(1, "G28"))
    good = frame_text(2, "G1 X5")
    lines = await port.command(good.replace(b"X5", b"X6"))
    assert lines == ["Error:checksum mismatch, Last Line: 1", "Resend: 2", "ok"]
    assert (await port.command(good)) == ["ok"]
    assert printer.executed[-1] == (2, "G1 X5")
    assert printer.stats.checksum_errors == 1 and printer.stats.resends_requested == 1


async def test_out_of_sequence_and_unchecked_lines_are_rejected_each_with_its_own_ok(
    printer: VirtualPrinter, port: Port
) -> None:
    await port.command(frame_text(0, "M110 N0"))
    # Lines 2 and 3 arrive before line 1: each is rejected; line 1 then goes in.
    port.send(frame_text(2, "G1 X2") + frame_text(3, "G1 X3") + b"N1 G1 X1\n" + frame_text(1, "G1 X1"))
    lines = [await port.line() for _ in range(10)]
    assert lines == [
        "Error:Line Number is not Last Line Number+1, Last Line: 0", "Resend: 1", "ok",
        "Error:Line Number is not Last Line Number+1, Last Line: 0", "Resend: 1", "ok",
        "Error:No Checksum with line number, Last Line: 0", "Resend: 1", "ok",
        "ok",
    ]
    assert printer.executed[-1] == (1, "G1 X1")


async def test_m110_resets_the_line_number(printer: VirtualPrinter, port: Port) -> None:
    await port.command(frame_text(0, "M110 N0"))
    await port.command(frame_text(1, "G90"))
    await port.command(frame_text(0, "M110 N100"))
    assert await port.command(frame_text(101, "G91")) == ["ok"]


async def test_m109_waits_for_the_hotend_and_reports_while_heating(printer: VirtualPrinter, port: Port) -> None:
    lines = await port.command("M109 S200")
    reports = [line for line in lines if line.startswith("T:")]
    assert reports and reports[0].split()[1] == "/200.00"
    actual, target = printer.temperatures["T0"]
    assert target == 200.0 and actual >= 199.0


async def test_every_line_gets_exactly_one_ok_even_with_noise(tmp_path: Path) -> None:
    p = VirtualPrinter(tmp_path / "noisy", speed_factor=1e6, noise=0.5, seed=7)
    await p.start()
    port = await Port.open(p.link)
    try:
        before = p.stats.lines_received
        for _ in range(40):
            lines = await port.command("G1 X1")
            assert lines[-1] == "ok" and not any(line == "ok" for line in lines[:-1])
        assert p.stats.lines_received - before == 40 and 5 < p.stats.corrupted < 36
    finally:
        port.close()
        await p.stop()


async def test_a_host_that_overruns_the_buffer_loses_bytes_as_on_a_real_board(
    printer: VirtualPrinter, port: Port
) -> None:
    assert printer.stats.overruns == 0
    port.send(b"G4 P1\n" * 200)  # 1200 bytes at once, while the firmware is stuck in the first dwell
    await port.until("ok")
    assert printer.stats.overruns > 0 and printer.stats.max_outstanding <= printer.rx_buffer


async def test_a_killed_printer_says_why_and_answers_nothing_more(printer: VirtualPrinter, port: Port) -> None:
    printer.inject_kill("Printer halted. kill() called!")
    assert await port.line() == "Error:Printer halted. kill() called!"
    port.send("M105")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(port.reader.readline(), 0.3)


async def test_m112_halts_at_once(printer: VirtualPrinter, port: Port) -> None:
    port.send("M112")
    assert await port.line() == "Error:Printer halted. kill() called!"


async def test_advanced_ok_reports_line_and_free_space(tmp_path: Path) -> None:
    p = VirtualPrinter(tmp_path / "adv", advanced_ok=True)
    await p.start()
    port = await Port.open(p.link)
    try:
        await port.command(frame_text(0, "M110 N0"))
        lines = await port.command(frame_text(1, "G28"))
        assert lines[-1].startswith("ok N1 P") and " B" in lines[-1]
    finally:
        port.close()
        await p.stop()


async def test_reopening_the_port_reboots_the_printer(printer: VirtualPrinter) -> None:
    first = await Port.open(printer.link)
    printer.inject_kill()
    await first.line()
    first.close()
    while printer.host_connected:  # a board notices the port closing; a pty needs a moment
        await asyncio.sleep(0.01)
    second = await Port.open(printer.link)
    try:
        assert (await second.command("M105"))[-1].startswith("ok T:")
    finally:
        second.close()
    assert printer.stats.connections == 2


async def test_cli_serves_until_sigterm_and_cleans_up(tmp_path: Path) -> None:
    link = tmp_path / "cli-printer"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "farmhand.cli", "--log-level", "warning", "sim", "printer",
        "--link", str(link), "--speed", "1000", "--noise", "0.0",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert f"serving on {link}" in banner
        port = await Port.open(link)
        assert (await port.command("M105"))[-1].startswith("ok T:")
        port.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0 and not os.path.lexists(link)


# ----------------------------------------------------------------------------- the wire


def test_bytes_arrive_ten_bit_times_apart_and_a_line_when_its_last_byte_does() -> None:
    uart = UartClock(250000)  # 40 microseconds a byte
    first, second = b"N1 G28*18\n", b"N2 G1 X1*99\n"
    arrived = uart.lines(10.0, first + second + b"N3 G")
    assert arrived == [(pytest.approx(10.0 + len(first) * 40e-6), first),
                       (pytest.approx(10.0 + (len(first) + len(second)) * 40e-6), second)]
    # The rest of line 3 comes later, but the wire is still busy with what came before.
    rest = uart.lines(10.0001, b"1 X2*7\n")
    assert rest == [(pytest.approx(10.0 + (len(first) + len(second) + 11) * 40e-6), b"N3 G1 X2*7\n")]
    # A write to an idle wire starts when it is written.
    assert uart.lines(20.0, b"M105\n") == [(pytest.approx(20.0 + 5 * 40e-6), b"M105\n")]


def test_answers_leave_one_after_another_at_the_same_pace() -> None:
    uart = UartClock(115200)
    assert uart.send(1.0, 3) == pytest.approx(1.0 + 3 * 10 / 115200)
    assert uart.send(1.0, 3) == pytest.approx(1.0 + 6 * 10 / 115200)


async def test_a_paced_printer_runs_a_burst_of_lines_in_order(tmp_path: Path) -> None:
    p = VirtualPrinter(tmp_path / "paced", speed_factor=1000.0, baud=115200)
    await p.start()
    port = await Port.open(p.link)
    try:
        await port.command(frame_text(0, "M110 N0"))
        burst = b"".join(frame_text(n, f"G1 X{n}") for n in range(1, 21))
        port.send(burst)
        for _ in range(20):
            assert await port.line() == "ok"
        assert p.executed[-20:] == [(n, f"G1 X{n}") for n in range(1, 21)]
    finally:
        port.close()
        await p.stop()


# ----------------------------------------------------------------------------- firmware behaviour


async def test_a_long_command_sends_busy_keep_alives_until_its_ok(tmp_path: Path) -> None:
    p = VirtualPrinter(tmp_path / "busy", speed_factor=10.0)  # keep-alive every 2 simulated seconds = 0.2 s
    await p.start()
    port = await Port.open(p.link)
    try:
        lines = await port.command("G4 S3")
        assert lines[:-1] and set(lines[:-1]) == {"echo:busy: processing"} and lines[-1] == "ok"
    finally:
        port.close()
        await p.stop()


async def test_m108_ends_a_heating_wait_at_once(tmp_path: Path) -> None:
    p = VirtualPrinter(tmp_path / "heat", speed_factor=1.0)  # heating to 200 °C would take real minutes
    await p.start()
    port = await Port.open(p.link)
    try:
        port.send("M109 S200")
        assert (await port.line()).startswith("T:")  # waiting, reporting
        port.send("M108")
        await port.until("ok")
        actual, target = p.temperatures["T0"]
        assert target == 200.0 and actual < 100.0
    finally:
        port.close()
        await p.stop()


async def test_an_injected_thermal_runaway_halts_in_the_firmwares_words(printer: VirtualPrinter, port: Port) -> None:
    printer.inject_thermal_runaway()
    assert await port.line() == "Error:Thermal Runaway, system stopped! Heater_ID: 0"
    assert await port.line() == "Error:Printer halted. kill() called!"
    assert printer.halted


async def test_an_injected_reset_boots_the_firmware_again(printer: VirtualPrinter, port: Port) -> None:
    await port.command(frame_text(0, "M110 N0"))
    await port.command(frame_text(1, "G28"))
    printer.inject_reset()
    assert await port.line() == "start"
    # The board forgot the numbering: line 1 is expected again.
    assert (await port.command(frame_text(1, "G90")))[-1] == "ok"


async def test_lost_oks_never_reach_the_host(printer: VirtualPrinter, port: Port) -> None:
    printer.lose_oks(1)
    port.send("G90")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(port.reader.readline(), 0.3)
    assert await port.command("G91") == ["ok"] and printer.stats.oks_lost == 1


async def test_filament_runout_and_buttons_ask_the_host_to_act(printer: VirtualPrinter, port: Port) -> None:
    printer.inject_runout()
    assert await port.line() == "//action:out_of_filament T0"
    printer.press("pause")
    assert (await port.until("//action:"))[-1] == "//action:pause"


async def test_the_sd_card_lists_selects_and_prints_a_file(tmp_path: Path) -> None:
    p = VirtualPrinter(tmp_path / "sd", speed_factor=1e5, sd_files={"PART.GCO": b"G28 ; home\nG1 X10\nG1 X20\n"})
    await p.start()
    port = await Port.open(p.link)
    try:
        assert await port.command("M20") == ["Begin file list", "PART.GCO 25", "End file list", "ok"]
        assert await port.command("M23 NOPE.GCO") == ["open failed, File: NOPE.GCO.", "ok"]
        assert await port.command("M23 PART.GCO") == ["File opened: PART.GCO Size: 25", "File selected", "ok"]
        port.send("M24")
        assert "Done printing file" in await port.until("Done printing file")
        assert p.card.executed == ["G28", "G1 X10", "G1 X20"]
        assert await port.command("M27") == ["SD printing byte 25/25", "ok"]
    finally:
        port.close()
        await p.stop()


async def test_the_printer_speaks_the_dialect_of_its_profile(tmp_path: Path) -> None:
    p = VirtualPrinter(tmp_path / "klipper", profile="klipper", speed_factor=1e5)
    await p.start()
    port = await Port.open(p.link, banner=None)  # Klipper's pty greets with nothing
    try:
        assert (await port.command("M115"))[-1].startswith("ok FIRMWARE_NAME:Klipper")
        assert (await port.command("N5 G1 X1*99")) == ["ok"]  # line numbers and checksums dropped unread
        assert p.executed[-1] == (None, "G1 X1")
    finally:
        port.close()
        await p.stop()


async def test_a_hung_firmware_answers_nothing(printer: VirtualPrinter, port: Port) -> None:
    printer.inject_hang()
    port.send("M105")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(port.reader.readline(), 0.3)


def recorded_conversation(path: Path) -> list[tuple[str, list[str]]]:
    """The ``>``/``<`` lines of a transcript's recorded part (up to its '-- end of the recording' comment)."""
    said: list[tuple[str, list[str]]] = []
    for raw in path.read_text().splitlines():
        if raw.startswith("# -- end of the recording"):
            break
        if raw.startswith("> "):
            said.append((raw[2:], []))
        elif raw.startswith("< "):
            said[-1][1].append(raw[2:])
    return said


def numbers_masked(lines: list[str]) -> list[str]:
    """Temperatures and versions differ between Klippy on no hardware and a simulated machine; words must not."""
    return [re.sub(r"\d+(?:\.\d+)*", "#", line) for line in lines]


async def test_the_klipper_dialect_answers_as_the_recorded_klippy_does(tmp_path: Path) -> None:
    from tests.serial_support import converse

    recorded = recorded_conversation(Path(__file__).parent / "transcripts" / "klipper.txt")
    assert len(recorded) >= 15 and any(sent == "FIRMWARE_RESTART" for sent, _ in recorded)
    printer = VirtualPrinter(tmp_path / "klipper0", profile="klipper", speed_factor=1000.0)
    await printer.start()
    try:
        answered = await converse(printer.link, [sent for sent, _ in recorded], quiet_s=0.1)
    finally:
        await printer.stop()
    for (sent, klippy), (_, simulated) in zip(recorded, answered, strict=True):
        assert numbers_masked(simulated) == numbers_masked(klippy), f"answers to {sent!r}"
