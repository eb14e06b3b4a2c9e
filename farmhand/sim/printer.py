"""A virtual Marlin-like printer on a pseudo-terminal, for the demo, the tests and benchmarks.

It answers on a pty exactly the way a host sees a USB printer: a ``start``
banner when the port opens, Marlin's line-number and checksum rules with
``Error:``/``Resend:``/``ok``, heaters that take time to heat and moves that
take time to run, both sped up by ``speed_factor``. ``noise`` corrupts one
byte of a received line with that probability, so a host's resend logic runs
for real. ``executed`` lists every command it ran, in order: the proof that a
host delivered each line once.

It never limits what it reads (the kernel's pty buffer would hide an overrun);
it counts the bytes a host has outstanding instead, and ``stats.overruns``
says whether a host ever sent more than the firmware could have held.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import random
import re
import time
import tty
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import structlog

from .marlin import (
    ERR_CHECKSUM,
    ERR_LINE_NUMBER,
    HeaterModel,
    LineChecker,
    Motion,
    parse_params,
)

log = structlog.get_logger("farmhand.sim")

MAX_CMD_SIZE = 96
# A board reset by the port opening boots for a moment; what the host sends meanwhile is lost.
BOOT_S = 0.05
PLANNER_SLOTS = 16
_EMERGENCY = re.compile(rb"^\s*(?:N\d+\s*)?(M112|M108|M410)\b")
# Commands a stock Marlin accepts that change nothing the simulation models.
_QUIET = frozenset(
    "G21 M17 M18 M84 M73 M75 M76 M77 M106 M107 M117 M118 M201 M203 M204 M205 M220 M221 M300 M900 M0 M1 "
    "M500 M501 M502 M503 M851 G29 G80 M420".split()
)


@dataclass(slots=True)
class PrinterStats:
    lines_received: int = 0
    corrupted: int = 0
    """Lines the noise corrupted."""
    checksum_errors: int = 0
    line_number_errors: int = 0
    other_line_errors: int = 0
    resends_requested: int = 0
    max_outstanding: int = 0
    """Most bytes a host had sent and not yet had answered."""
    overruns: int = 0
    """Times the outstanding bytes exceeded rx_buffer + bufsize * 96: a host bug."""
    connections: int = 0


class VirtualPrinter:
    def __init__(
        self,
        link: str | Path,
        *,
        speed_factor: float = 100.0,
        noise: float = 0.0,
        seed: int | None = None,
        rx_buffer: int = 128,
        bufsize: int = 4,
        advanced_ok: bool = False,
        name: str = "Farmhand Virtual Printer",
    ) -> None:
        if speed_factor <= 0:
            raise ValueError("speed_factor must be > 0")
        if not 0.0 <= noise < 1.0:
            raise ValueError("noise is a probability in [0, 1)")
        self.link = Path(link)
        self.speed_factor = speed_factor
        self.noise = noise
        self.rx_buffer = rx_buffer
        self.bufsize = bufsize
        self.advanced_ok = advanced_ok
        self.name = name
        self.executed: list[tuple[int | None, str]] = []
        self.stats = PrinterStats()
        self._rng = random.Random(seed)
        self._master = -1
        self._tty = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._worker: asyncio.Task[None] | None = None
        self._autoreport: asyncio.Task[None] | None = None
        self._connected = False
        self._booting: asyncio.TimerHandle | None = None
        self._out = bytearray()
        self._writing = False
        self._boot()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        self._tty = os.ttyname(slave)
        # Only the host holds the slave open, so a read on the master says EIO exactly while no host is there.
        os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        self.link.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self._tty)
        os.replace(tmp, self.link)
        self._tasks = [asyncio.create_task(self._read_loop(), name=f"sim-read {self.link}")]
        log.info("virtual printer serving", link=str(self.link), tty=self._tty, speed=self.speed_factor,
                 noise=self.noise)

    async def stop(self) -> None:
        self._stop_worker()
        for task in [*self._tasks, self._worker, self._autoreport]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in [*self._tasks, self._worker, self._autoreport] if t],
                             return_exceptions=True)
        self._tasks = []
        if self._master >= 0:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._master)
            loop.remove_writer(self._master)
            os.close(self._master)
            self._master = -1
        try:
            if os.readlink(self.link) == self._tty:
                self.link.unlink()
        except OSError:
            pass

    def inject_kill(self, message: str = "Printer halted. kill() called!") -> None:
        """Make the firmware stop as Marlin's kill() does: print ``Error:<message>`` and answer nothing more."""
        self._kill(message)

    @property
    def halted(self) -> bool:
        """Stopped by kill() (M112, an injected fault) until the host opens the port again."""
        return self._halted

    @property
    def host_connected(self) -> bool:
        """Whether a host holds the port open (as far as the last read could tell)."""
        return self._connected

    @property
    def tty(self) -> str:
        """The pty the link points to."""
        return self._tty

    @property
    def temperatures(self) -> dict[str, tuple[float, float]]:
        now = self._now()
        return {"T0": (self.hotend.at(now), self.hotend.target), "B": (self.bed.at(now), self.bed.target)}

    # ------------------------------------------------------------------ receiving

    def _boot(self) -> None:
        """Power-on state; also what a host opening the port gets (DTR resets the board)."""
        self.checker = LineChecker()
        self.motion = Motion()
        self.hotend = HeaterModel(tau_s=25.0, now=self._now())
        self.bed = HeaterModel(tau_s=60.0, now=self._now())
        self._halted = False
        self._lines: deque[bytes] = deque()
        self._line_ready = asyncio.Event()
        self._rx = bytearray()
        self._outstanding = 0
        self._planner: deque[float] = deque()
        self._break_wait = False

    async def _read_loop(self) -> None:
        present = False
        while True:
            try:
                data = os.read(self._master, 4096)
            except BlockingIOError:
                if not present:
                    present = True
                    self._host_opened()
                await self._readable()
                continue
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                if present:
                    present = False
                    self._host_closed()
                await asyncio.sleep(0.02)
                continue
            if not present:
                present = True
                self._host_opened()
            if self._booting is None:
                self._received(data)

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        loop.add_reader(self._master, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            loop.remove_reader(self._master)

    def _host_opened(self) -> None:
        self.stats.connections += 1
        self._stop_worker()
        self._boot()
        self._connected = True
        self._booting = asyncio.get_running_loop().call_later(BOOT_S, self._booted)

    def _booted(self) -> None:
        self._booting = None
        self._worker = asyncio.create_task(self._work(), name=f"sim-work {self.link}")
        self._send(["start", f"echo:Marlin 2.1.2 ({self.name})", "echo: Last Updated: 2026-01-01 | Author: Farmhand",
                    "echo:Compiled: Jan  1 2026", "echo: Free Memory: 4096  PlannerBufferBytes: 1600"])

    def _host_closed(self) -> None:
        self._connected = False
        self._out.clear()
        self._stop_worker()

    def _stop_worker(self) -> None:
        if self._booting is not None:
            self._booting.cancel()
            self._booting = None
        for task in (self._worker, self._autoreport):
            if task is not None:
                task.cancel()
        self._worker = self._autoreport = None

    def _received(self, data: bytes) -> None:
        self._outstanding += len(data)
        if self._outstanding > self.stats.max_outstanding:
            self.stats.max_outstanding = self._outstanding
        if self._outstanding > self.rx_buffer + self.bufsize * MAX_CMD_SIZE:
            self.stats.overruns += 1
        self._rx += data
        while (end := self._rx.find(b"\n")) >= 0:
            raw = bytes(self._rx[:end + 1])
            del self._rx[:end + 1]
            self.stats.lines_received += 1
            raw = self._corrupt(raw)
            emergency = _EMERGENCY.match(raw)
            if emergency and emergency.group(1) == b"M112":
                self._kill("Printer halted. kill() called!")
                continue
            if emergency and emergency.group(1) == b"M108":
                self._break_wait = True
            self._lines.append(raw)
            self._line_ready.set()

    def _corrupt(self, raw: bytes) -> bytes:
        body = raw.rstrip(b"\r\n")
        if not body or self.noise <= 0 or self._rng.random() >= self.noise:
            return raw
        pos = self._rng.randrange(len(body))
        choices = [c for c in range(0x21, 0x7F) if c != body[pos]]
        self.stats.corrupted += 1
        return body[:pos] + bytes([self._rng.choice(choices)]) + body[pos + 1:] + raw[len(body):]

    # ------------------------------------------------------------------ executing

    async def _work(self) -> None:
        while True:
            while not self._lines:
                self._line_ready.clear()
                await self._line_ready.wait()
            raw = self._lines.popleft()
            if self._halted:
                continue
            verdict = self.checker.check(raw.decode("latin-1"))
            if verdict.error is not None:
                self._count_error(verdict.error)
                self._outstanding -= len(raw)
                self._send(self.checker.rejection(verdict.error))
                continue
            self.executed.append((verdict.line, verdict.command))
            lines, ok = await self._execute(verdict.command)
            if self._halted:
                continue
            self._answer(raw, [*lines, ok])

    def _count_error(self, error: str) -> None:
        self.stats.resends_requested += 1
        if error == ERR_CHECKSUM:
            self.stats.checksum_errors += 1
        elif error == ERR_LINE_NUMBER:
            self.stats.line_number_errors += 1
        else:
            self.stats.other_line_errors += 1

    def _answer(self, raw: bytes, lines: list[str]) -> None:
        self._outstanding -= len(raw)
        if self.advanced_ok and lines and lines[-1] == "ok":
            free_planner = PLANNER_SLOTS - len(self._planner)
            free_buffer = max(0, self.bufsize - len(self._lines))
            lines[-1] = f"ok N{self.checker.last_line} P{free_planner} B{free_buffer}"
        self._send(lines)

    async def _execute(self, command: str) -> tuple[list[str], str]:
        """Run one command; return the lines it prints and its ok line."""
        code, params = parse_params(command)
        now = self._now()
        match code:
            case "G0" | "G1":
                await self._plan(self.motion.move(params))
            case "G28":
                await self._drain()
                await self._sleep(3.0)
                self.motion.set_position({"X": 0.0, "Y": 0.0, "Z": 0.0})
            case "G4":
                await self._drain()
                await self._sleep(params.get("P", 0.0) / 1000.0 + params.get("S", 0.0))
            case "G90" | "G91":
                self.motion.relative = code == "G91"
            case "M82" | "M83":
                self.motion.relative_e = code == "M83"
            case "G92":
                self.motion.set_position(params)
            case "M400":
                await self._drain()
            case "M104" | "M109":
                self.hotend.set_target(params.get("S", params.get("R", 0.0)), now)
                if code == "M109":
                    await self._wait_heater(self.hotend, cooling="R" in params)
            case "M140" | "M190":
                self.bed.set_target(params.get("S", params.get("R", 0.0)), now)
                if code == "M190":
                    await self._wait_heater(self.bed, cooling="R" in params)
            case "M105":
                return [], f"ok {self._temperature_report()}"
            case "M114":
                return [self.motion.report()], "ok"
            case "M115":
                return self._firmware_report(), "ok"
            case "M110":
                self.checker.last_line = int(params.get("N", 0))
            case "M155":
                self._set_autoreport(params.get("S", 0.0))
            case "M108" | "M112" | "M410":
                pass
            case _ if code in _QUIET:
                pass
            case _:
                return [f'echo:Unknown command: "{command}"'], "ok"
        return [], "ok"

    def _firmware_report(self) -> list[str]:
        caps = {
            "SERIAL_XON_XOFF": 0, "BINARY_FILE_TRANSFER": 0, "EEPROM": 0, "AUTOREPORT_TEMP": 1,
            "PROGRESS": 0, "PRINT_JOB": 1, "AUTOLEVEL": 0, "Z_PROBE": 0, "SOFTWARE_POWER": 0,
            "EMERGENCY_PARSER": 1, "HOST_ACTION_COMMANDS": 1, "PROMPT_SUPPORT": 0, "SDCARD": 0,
            "AUTOREPORT_POS": 0, "ADVANCED_OK": int(self.advanced_ok),
        }
        head = (f"FIRMWARE_NAME:Marlin 2.1.2 (Farmhand virtual printer) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin "
                f"PROTOCOL_VERSION:1.0 MACHINE_TYPE:{self.name} EXTRUDER_COUNT:1 UUID:00000000-0000-4000-8000-000000000000")
        return [head, *(f"Cap:{name}:{on}" for name, on in caps.items())]

    def _temperature_report(self) -> str:
        now = self._now()
        return (f"T:{self.hotend.at(now):.2f} /{self.hotend.target:.2f} B:{self.bed.at(now):.2f} /{self.bed.target:.2f} "
                f"@:{127 if self.hotend.target > self.hotend.actual else 0} B@:{127 if self.bed.target > self.bed.actual else 0}")

    async def _wait_heater(self, heater: HeaterModel, cooling: bool) -> None:
        """Block like M109/M190, printing the temperatures every simulated second."""
        report_every = max(1.0 / self.speed_factor, 0.05)
        self._break_wait = False
        while not self._break_wait:
            remaining = heater.time_to_reach(self._now(), cooling=cooling) / self.speed_factor
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, report_every))
            self._send([f"{self._temperature_report()} W:?"])

    def _set_autoreport(self, interval_s: float) -> None:
        if self._autoreport is not None:
            self._autoreport.cancel()
            self._autoreport = None
        if interval_s > 0:
            self._autoreport = asyncio.create_task(self._autoreport_loop(max(interval_s / self.speed_factor, 0.05)))

    async def _autoreport_loop(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self._send([self._temperature_report()])

    async def _plan(self, duration_s: float) -> None:
        """Queue a move; wait only while the planner is full, as Marlin does before it says ok."""
        now = time.monotonic()
        while self._planner and self._planner[0] <= now:
            self._planner.popleft()
        if len(self._planner) >= PLANNER_SLOTS:
            await asyncio.sleep(self._planner[0] - now)
            self._planner.popleft()
            now = time.monotonic()
        start = self._planner[-1] if self._planner and self._planner[-1] > now else now
        self._planner.append(start + duration_s / self.speed_factor)

    async def _drain(self) -> None:
        if self._planner:
            await asyncio.sleep(max(0.0, self._planner[-1] - time.monotonic()))
            self._planner.clear()

    async def _sleep(self, simulated_s: float) -> None:
        if simulated_s > 0:
            await asyncio.sleep(simulated_s / self.speed_factor)

    def _kill(self, message: str) -> None:
        if self._halted:
            return
        self._halted = True
        self._lines.clear()
        self._send([f"Error:{message}"])
        if self._autoreport is not None:
            self._autoreport.cancel()
            self._autoreport = None
        log.warning("virtual printer halted", link=str(self.link), reason=message)

    def _now(self) -> float:
        """Simulated seconds: real time sped up."""
        return time.monotonic() * self.speed_factor

    # ------------------------------------------------------------------ sending

    def _send(self, lines: list[str]) -> None:
        if not self._connected or self._master < 0:
            return
        self._out += ("\n".join(lines) + "\n").encode()
        if not self._writing:
            self._flush()

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._out:
                written = os.write(self._master, self._out)
                del self._out[:written]
        except BlockingIOError:
            if not self._writing:
                self._writing = True
                loop.add_writer(self._master, self._flush)
            return
        except OSError:
            # The host went away mid-write; what it did not read is lost, as on a real wire.
            self._out.clear()
        if self._writing:
            self._writing = False
            loop.remove_writer(self._master)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--link", type=Path, required=True, help="path of the symlink to the printer's pty, e.g. /tmp/printer0")
    p.add_argument("--speed", type=float, default=100.0, help="run this many times faster than real (default 100)")
    p.add_argument("--noise", type=float, default=0.0, help="probability a received line gets one corrupted byte")
    p.add_argument("--seed", type=int, default=None, help="random seed for the noise, for repeatable runs")
    p.add_argument("--rx-buffer", type=int, default=128, help="firmware receive buffer in bytes (default 128)")
    p.add_argument("--bufsize", type=int, default=4, help="firmware command queue length (default 4)")
    p.add_argument("--advanced-ok", action="store_true", help="answer 'ok N<line> P<planner> B<buffer>'")
    p.add_argument("--name", default="Farmhand Virtual Printer", help="MACHINE_TYPE reported by M115")


async def run_from_args(args: argparse.Namespace) -> int:
    from farmhand.service import run_service

    printer = VirtualPrinter(args.link, speed_factor=args.speed, noise=args.noise, seed=args.seed,
                             rx_buffer=args.rx_buffer, bufsize=args.bufsize, advanced_ok=args.advanced_ok,
                             name=args.name)

    async def start() -> None:
        await printer.start()
        print(f"farmhand sim printer: serving on {printer.link} (-> {printer.tty}); Ctrl-C stops", flush=True)

    await run_service(start, printer.stop)
    return 0
