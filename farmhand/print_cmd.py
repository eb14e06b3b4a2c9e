"""``farmhand print PORT FILE``: stream a G-code file to a printer on a serial port, no hub needed.

The same driver the agent uses (checksums, resends, the firmware's dialect,
halts and resets in the firmware's own words), with a progress bar on a
terminal and a summary at the end. The exit status says how it went: 0 the
job completed, 1 it failed (the summary says why), 2 the file or options were
refused before anything moved, 3 the printer never answered, 130 interrupted
(the job is cancelled first, with the profile's cancel script).

``print_files`` streams several files to several printers at once from one
process; the serial benchmark drives it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from agent.devices.base import CommandRejected
from agent.serial.pacing import Pacing
from agent.serial.profiles import ProfileError
from protocol.messages import (
    DeviceError,
    DeviceState,
    DeviceStatus,
    Event,
    JobCompleted,
    JobFailed,
    Telemetry,
)

if TYPE_CHECKING:
    from agent.devices.serial_gcode import SerialGcodeDevice

EXIT_OK, EXIT_FAILED, EXIT_REFUSED, EXIT_NO_PRINTER, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
BAR_EVERY_S = 0.2
CANCEL_GRACE_S = 2.0


@dataclass
class PrintResult:
    port: str
    file: str
    ok: bool = False
    lines: int = 0
    lines_done: int = 0
    seconds: float = 0.0
    resends: int = 0
    bytes_sent: int = 0
    lost_oks: int = 0
    errors: list[str] = field(default_factory=list)
    reason: str = ""
    exit_code: int = EXIT_FAILED

    @property
    def lines_per_s(self) -> float:
        return self.lines_done / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        outcome = "completed" if self.ok else f"FAILED: {self.reason}"
        errors = "; ".join(self.errors) if self.errors else "none"
        return (f"{self.file} on {self.port}: {outcome}\n"
                f"  lines {self.lines_done}/{self.lines}, {self.seconds:.1f} s wall, {self.lines_per_s:.0f} lines/s, "
                f"resends {self.resends}, errors: {errors}")


class _Recorder:
    """What the driver emits, kept for the summary."""

    def __init__(self) -> None:
        self.ended = asyncio.Event()
        self.result: JobCompleted | JobFailed | None = None
        self.errors: list[str] = []

    def event(self, body: Event) -> None:
        if isinstance(body, JobCompleted | JobFailed):
            self.result = body
            self.ended.set()
        elif isinstance(body, DeviceError):
            self.errors.append(body.message)

    def status(self, status: DeviceStatus) -> None:
        pass

    def telemetry(self, telemetry: Telemetry) -> None:
        pass


class _Bar:
    """One line on a terminal, rewritten in place."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = max(total, 1)
        self.started = time.monotonic()

    def show(self, done: int) -> None:
        elapsed = time.monotonic() - self.started
        fraction = min(done / self.total, 1.0)
        rate = done / elapsed if elapsed else 0.0
        left = (self.total - done) / rate if rate else 0.0
        bar = "#" * int(fraction * 30)
        self.out.write(f"\r[{bar:<30}] {fraction:6.1%} {done}/{self.total} lines {rate:5.0f}/s "
                       f"left {int(left) // 60}:{int(left) % 60:02d} ")
        self.out.flush()

    def done(self) -> None:
        self.out.write("\n")
        self.out.flush()


async def print_file(port: str, file: Path, *, baud: int = 115200, profile: str = "marlin2",
                     connect_timeout_s: float = 30.0, progress: TextIO | None = None,
                     stop: asyncio.Event | None = None, pacing: Pacing = "auto") -> PrintResult:
    """Stream ``file`` to the printer on ``port``; never raises for what the printer does, only reports it."""
    # The driver needs pyserial, an agent's dependency: only ``farmhand print`` itself loads it.
    from agent.devices.serial_gcode import SerialGcodeDevice

    result = PrintResult(port=port, file=str(file))
    recorder = _Recorder()
    device = SerialGcodeDevice("cli", recorder, port=port, baud=baud, profile=profile, poll_interval_s=2.0,
                               pacing=pacing)
    await device.open()
    try:
        try:
            async with asyncio.timeout(connect_timeout_s):
                while device.state is not DeviceState.IDLE:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            result.reason = (f"the printer did not answer on {port} within {connect_timeout_s:.0f} s "
                             f"({device.state.value})")
            result.exit_code = EXIT_NO_PRINTER
            return result
        try:
            await device.start_job("cli", file)
        except CommandRejected as exc:
            result.reason = str(exc)
            result.exit_code = EXIT_REFUSED
            return result
        started = time.monotonic()
        result.lines = device.engine.job_lines
        await _follow(device, recorder, result, progress, stop)
        result.seconds = round(time.monotonic() - started, 3)
        result.lines_done = device.jobs.last_lines_done
        result.resends = device.engine.resends
        result.lost_oks = device.engine.lost_oks
        result.bytes_sent = device.engine.bytes_sent
        result.errors = recorder.errors
        if isinstance(recorder.result, JobCompleted):
            result.ok, result.exit_code = True, EXIT_OK
        elif isinstance(recorder.result, JobFailed):
            result.reason = recorder.result.reason
            result.exit_code = EXIT_INTERRUPTED if stop is not None and stop.is_set() else EXIT_FAILED
        return result
    finally:
        await device.close()


async def _follow(device: SerialGcodeDevice, recorder: _Recorder, result: PrintResult, progress: TextIO | None,
                  stop: asyncio.Event | None) -> None:
    bar = _Bar(progress, result.lines) if progress is not None else None
    while not recorder.ended.is_set():
        if stop is not None and stop.is_set() and device.state in (DeviceState.PRINTING, DeviceState.PAUSED):
            await device.cancel()
            # Let the cancel script reach the printer before the port closes.
            async with asyncio.timeout(CANCEL_GRACE_S):
                while device.engine.busy:
                    await asyncio.sleep(0.05)
            break
        if bar is not None:
            bar.show(device.engine.lines_done)
        try:
            await asyncio.wait_for(recorder.ended.wait(), BAR_EVERY_S)
        except TimeoutError:
            pass
    if bar is not None:
        bar.show(device.engine.lines_done)
        bar.done()


async def print_files(targets: list[tuple[str, Path]], *, baud: int, profile: str,
                      connect_timeout_s: float = 30.0, pacing: Pacing = "auto") -> list[PrintResult]:
    """Stream each file to its printer, all at once, from this one process."""
    return list(await asyncio.gather(*(print_file(port, file, baud=baud, profile=profile, pacing=pacing,
                                                  connect_timeout_s=connect_timeout_s) for port, file in targets)))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("port", help="the printer's serial device, e.g. /dev/ttyACM0 (or a virtual printer's link)")
    p.add_argument("file", type=Path, help="the G-code file to print")
    p.add_argument("--baud", type=int, default=115200, help="serial speed (default 115200)")
    p.add_argument("--profile", default="marlin2",
                   help="firmware dialect: marlin2, prusa-mk3s, prusa-buddy, reprapfirmware, klipper, "
                        "smoothieware, repetier (default marlin2)")
    p.add_argument("--pacing", choices=("auto", "wire", "none"), default="auto",
                   help="'wire': a UART, read answers at the baud rate's pace; 'none': a pty or USB link "
                        "(Klipper's /tmp/printer), read them as they come; 'auto' (default): ask the port's driver")
    p.add_argument("--connect-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="give up when the printer does not answer within this long (default 30)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object instead")


async def run_from_args(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        print(f"farmhand print: {args.file}: no such file", file=sys.stderr)
        return EXIT_REFUSED
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        result = await print_file(args.port, args.file, baud=args.baud, profile=args.profile,
                                  connect_timeout_s=args.connect_timeout, pacing=args.pacing,
                                  progress=sys.stderr if sys.stderr.isatty() and not args.json else None, stop=stop)
    except ProfileError as exc:
        print(f"farmhand print: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if args.json:
        print(json.dumps({**asdict(result), "lines_per_s": round(result.lines_per_s, 1)}))
    else:
        print(result.summary())
    return result.exit_code


def main(argv: list[str] | None = None) -> int:
    """``python -m farmhand.print_cmd PORT FILE``, until ``farmhand print`` is wired into the CLI."""
    from protocol import logs

    parser = argparse.ArgumentParser(prog="farmhand print", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="example: farmhand print /dev/ttyACM0 benchy.gcode --baud 250000")
    add_arguments(parser)
    parser.add_argument("--log-level", default="warning", help="debug, info, warning or error (default warning)")
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    from agent.loop import run

    return run(run_from_args(args))


if __name__ == "__main__":
    sys.exit(main())
