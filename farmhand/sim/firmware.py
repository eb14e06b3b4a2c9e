"""What the virtual board does with each line it receives: Marlin's checks, then the command, then ``ok``.

One ``VirtualFirmware`` lives from one boot to the next; the printer makes a
fresh one whenever a host opens the port (DTR resets the board). Lines are
answered strictly in order, so every line gets exactly one ``ok``, rejected or run.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from .marlin import ERR_CHECKSUM, ERR_LINE_NUMBER, HeaterModel, LineChecker, Motion, parse_params

log = structlog.get_logger("farmhand.sim")

MAX_CMD_SIZE = 96
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


class VirtualFirmware:
    def __init__(
        self,
        *,
        send: Callable[[list[str]], None],
        executed: list[tuple[int | None, str]],
        stats: PrinterStats,
        speed_factor: float,
        rx_buffer: int,
        bufsize: int,
        advanced_ok: bool,
        name: str,
        link: str,
    ) -> None:
        self._send = send
        self.executed = executed
        self.stats = stats
        self.speed_factor = speed_factor
        self.rx_buffer = rx_buffer
        self.bufsize = bufsize
        self.advanced_ok = advanced_ok
        self.name = name
        self._log = log.bind(link=link)
        self.checker = LineChecker()
        self.motion = Motion()
        self.hotend = HeaterModel(tau_s=25.0, now=self.now())
        self.bed = HeaterModel(tau_s=60.0, now=self.now())
        self.halted = False
        self._lines: deque[bytes] = deque()
        self._line_ready = asyncio.Event()
        self._outstanding = 0
        self._planner: deque[float] = deque()
        self._break_wait = False
        self._autoreport: asyncio.Task[None] | None = None

    def now(self) -> float:
        """Simulated seconds: real time sped up."""
        return time.monotonic() * self.speed_factor

    def received_bytes(self, count: int) -> None:
        """Count bytes as they arrive, before any line is complete: that is what fills a real buffer."""
        self._outstanding += count
        if self._outstanding > self.stats.max_outstanding:
            self.stats.max_outstanding = self._outstanding
        if self._outstanding > self.rx_buffer + self.bufsize * MAX_CMD_SIZE:
            self.stats.overruns += 1

    def received_line(self, raw: bytes) -> None:
        emergency = _EMERGENCY.match(raw)
        if emergency and emergency.group(1) == b"M112":
            self.kill("Printer halted. kill() called!")
            return
        if emergency and emergency.group(1) == b"M108":
            self._break_wait = True
        self._lines.append(raw)
        self._line_ready.set()

    def kill(self, message: str) -> None:
        if self.halted:
            return
        self.halted = True
        self._lines.clear()
        self._send([f"Error:{message}"])
        self.stop()
        self._log.warning("virtual printer halted", reason=message)

    def stop(self) -> None:
        if self._autoreport is not None:
            self._autoreport.cancel()
            self._autoreport = None

    def temperatures(self) -> dict[str, tuple[float, float]]:
        now = self.now()
        return {"T0": (self.hotend.at(now), self.hotend.target), "B": (self.bed.at(now), self.bed.target)}

    async def run(self) -> None:
        while True:
            while not self._lines:
                self._line_ready.clear()
                await self._line_ready.wait()
            raw = self._lines.popleft()
            if self.halted:
                continue
            verdict = self.checker.check(raw.decode("latin-1"))
            if verdict.error is not None:
                self._count_error(verdict.error)
                self._outstanding -= len(raw)
                self._send(self.checker.rejection(verdict.error))
                continue
            self.executed.append((verdict.line, verdict.command))
            lines, ok = await self._execute(verdict.command)
            if self.halted:
                continue
            self._outstanding -= len(raw)
            if self.advanced_ok and ok == "ok":
                ok = f"ok N{self.checker.last_line} P{PLANNER_SLOTS - len(self._planner)} " \
                     f"B{max(0, self.bufsize - len(self._lines))}"
            self._send([*lines, ok])

    def _count_error(self, error: str) -> None:
        self.stats.resends_requested += 1
        if error == ERR_CHECKSUM:
            self.stats.checksum_errors += 1
        elif error == ERR_LINE_NUMBER:
            self.stats.line_number_errors += 1
        else:
            self.stats.other_line_errors += 1

    async def _execute(self, command: str) -> tuple[list[str], str]:
        """Run one command; return the lines it prints and its ok line."""
        code, params = parse_params(command)
        now = self.now()
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

    def banner(self) -> list[str]:
        return ["start", f"echo:Marlin 2.1.2 ({self.name})", "echo: Last Updated: 2026-01-01 | Author: Farmhand",
                "echo:Compiled: Jan  1 2026", "echo: Free Memory: 4096  PlannerBufferBytes: 1600"]

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
        now = self.now()
        hotend, bed = self.hotend, self.bed
        return (f"T:{hotend.at(now):.2f} /{hotend.target:.2f} B:{bed.at(now):.2f} /{bed.target:.2f} "
                f"@:{127 if hotend.target > hotend.actual else 0} B@:{127 if bed.target > bed.actual else 0}")

    async def _wait_heater(self, heater: HeaterModel, cooling: bool) -> None:
        """Block like M109/M190, printing the temperatures every simulated second."""
        report_every = max(1.0 / self.speed_factor, 0.05)
        self._break_wait = False
        while not self._break_wait:
            remaining = heater.time_to_reach(self.now(), cooling=cooling) / self.speed_factor
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, report_every))
            self._send([f"{self._temperature_report()} W:?"])

    def _set_autoreport(self, interval_s: float) -> None:
        self.stop()
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
