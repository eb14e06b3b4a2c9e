"""What the virtual board does with what it receives: a receive buffer in bytes, a command queue, the commands.

One ``VirtualFirmware`` lives from one boot to the next; the printer makes a
fresh one whenever a host opens the port (DTR resets the board) or a reset is
injected. It follows Marlin's shape, worded in the profile's dialect:

- bytes land in a receive buffer of ``rx_buffer`` bytes; those that find it
  full are lost (the line they belonged to runs into the next one);
- between commands the firmware parses complete lines out of that buffer into
  a queue of ``bufsize`` commands, checking numbers and checksums; a rejected
  line is answered at once (error, resend request, ok), ahead of the queue;
- the command at the head of the queue runs, then gets its ``ok`` (with
  ADVANCED_OK: ``ok N<line> P<planner free> B<queue free>``). While a command
  waits (a full planner, heating, a dwell) no line is parsed, so the receive
  buffer fills, as on a real board; a long wait sends busy keep-alives;
- with the emergency parser, M112, M108 and M410 act the moment they arrive.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog

from agent.serial.profiles import FirmwareProfile

from .marlin import ERR_CHECKSUM, ERR_LINE_NUMBER, ERR_NO_CHECKSUM, HeaterModel, LineChecker, Motion, parse_params
from .sdcard import SdCard

log = structlog.get_logger("farmhand.sim")

Result = tuple[list[str], str | None]
"""What a command printed, and its ok line (None: the usual ok)."""

_EMERGENCY = re.compile(rb"^\s*(?:N\d+\s*)?(M112|M108|M410)\b")
# Commands a stock Marlin accepts that change nothing the simulation models.
_QUIET = frozenset(
    "G21 G29 G80 M17 M18 M84 M73 M75 M76 M77 M106 M107 M117 M118 M201 M203 M204 M205 M220 M221 M300 M900 "
    "M500 M501 M502 M503 M851 M420 M876 M21 M22".split()
)
_CAPABILITIES = {
    "SERIAL_XON_XOFF": 0, "BINARY_FILE_TRANSFER": 0, "EEPROM": 0, "AUTOREPORT_TEMP": 1, "PROGRESS": 0,
    "PRINT_JOB": 1, "AUTOLEVEL": 0, "Z_PROBE": 0, "SOFTWARE_POWER": 0, "EMERGENCY_PARSER": 1,
    "HOST_ACTION_COMMANDS": 1, "PROMPT_SUPPORT": 0, "AUTOREPORT_POS": 0,
}


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
    """Most bytes the receive buffer ever held."""
    overruns: int = 0
    """Times bytes arrived to a full receive buffer and were lost: a host that sends too much."""
    oks_lost: int = 0
    """Answers dropped on the way to the host (injected)."""
    connections: int = 0


class VirtualFirmware:
    def __init__(
        self,
        *,
        profile: FirmwareProfile,
        send: Callable[[list[str]], None],
        executed: list[tuple[int | None, str]],
        stats: PrinterStats,
        card: SdCard,
        speed_factor: float,
        rx_buffer: int,
        bufsize: int,
        advanced_ok: bool,
        name: str,
        link: str,
    ) -> None:
        self.profile = profile
        self.emulation = profile.emulation
        self._send = send
        self.executed = executed
        self.stats = stats
        self.card = card
        self.speed_factor = speed_factor
        self.rx_buffer = rx_buffer
        self.bufsize = bufsize
        self.advanced_ok = advanced_ok
        self.name = name
        self._log = log.bind(link=link)
        caps: dict[str, int] = {}
        if self.emulation.capabilities:
            # Marlin's M115 lists every capability; a firmware without Cap: lines gets none.
            caps = {**_CAPABILITIES, **self.emulation.capabilities, "ADVANCED_OK": int(advanced_ok),
                    "SDCARD": int(self.emulation.sd_card)}
        self.capabilities = caps
        self.emergency_parser = bool(caps.get("EMERGENCY_PARSER"))
        self.checker = LineChecker(checksums=profile.checksums)
        self.motion = Motion()
        self.hotend = HeaterModel(tau_s=25.0, now=self.now())
        self.bed = HeaterModel(tau_s=60.0, now=self.now())
        self.planner_slots = profile.planner_slots
        self.halted = False
        self._ring: deque[bytes] = deque()
        self._ring_bytes = 0
        self._carry = b""
        self._queue: deque[tuple[int | None, str, bool]] = deque()
        self._blocked = False
        self._waiting: asyncio.Task[None] | None = None
        self._planner: deque[float] = deque()
        self._break_wait = False
        self._autoreport: asyncio.Task[None] | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._sd_done = False

    def now(self) -> float:
        """Simulated seconds: real time sped up."""
        return time.monotonic() * self.speed_factor

    # ------------------------------------------------------------------ what arrives

    def received_line(self, raw: bytes) -> None:
        """A line's last byte arrived (``raw`` ends with it)."""
        if self.halted:
            return
        if self.emergency_parser:
            emergency = _EMERGENCY.match(raw)
            if emergency:
                self._emergency(emergency.group(1))
                if self.halted:
                    return
        room = self.rx_buffer - self._ring_bytes
        if len(raw) > room:
            # The bytes that find the buffer full are lost, the line's end among them: it runs into the next.
            self.stats.overruns += 1
            kept = max(room, 0)
            self._carry += raw[:kept]
            self._ring_bytes += kept
            return
        self._ring.append(self._carry + raw)
        self._carry = b""
        self._ring_bytes += len(raw)
        if self._ring_bytes > self.stats.max_outstanding:
            self.stats.max_outstanding = self._ring_bytes
        self._step()

    def _emergency(self, code: bytes) -> None:
        if code == b"M112":
            self.kill()
        elif code == b"M108":
            self._break_wait = True
        elif code == b"M410":
            self._planner.clear()

    def _step(self) -> None:
        """Marlin's main loop: parse what the queue has room for, run the head command, again, until one waits."""
        queue = self._queue
        while not self._blocked and not self.halted:
            self._drain()
            if not queue:
                return
            line, command, send_ok = queue[0]
            outcome = self._execute(command)
            if isinstance(outcome, tuple):
                self._finish(outcome, line, send_ok)
            else:
                self._blocked = True
                self._waiting = asyncio.create_task(self._wait_then_finish(outcome, line, send_ok))

    async def _wait_then_finish(self, wait: Coroutine[Any, Any, Result], line: int | None, send_ok: bool) -> None:
        outcome = await wait
        self._waiting = None
        if self.halted:
            return
        self._blocked = False
        self._finish(outcome, line, send_ok)
        self._step()

    def _finish(self, outcome: Result, line: int | None, send_ok: bool) -> None:
        lines, ok = outcome
        if send_ok:
            lines.append(ok if ok is not None else self._ok(line))
        self._queue.popleft()
        if lines:
            self._send(lines)

    def _drain(self) -> None:
        """Parse lines out of the receive buffer while the queue has room; then the SD card may feed it."""
        ring, queue = self._ring, self._queue
        while ring and len(queue) < self.bufsize:
            raw = ring.popleft()
            self._ring_bytes -= len(raw)
            self._parse(raw)
        while self.card.printing and len(queue) < self.bufsize:
            command = self.card.next_command()
            if command is None:
                self._sd_done = True
                break
            queue.append((None, command, False))
        if not queue and self._sd_done:
            self._sd_done = False
            self._send(["Done printing file"])

    def _parse(self, raw: bytes) -> None:
        verdict = self.checker.check(raw.decode("latin-1"))
        if verdict.error is not None:
            self._reject(verdict.error, verdict.line)
            return
        if not verdict.command:
            return  # an empty line gets no ok, in every firmware
        self.executed.append((verdict.line, verdict.command))
        if self.emulation.ok_when == "queued":
            # Repetier acknowledges a line as soon as it is queued, naming it.
            self._send([f"ok {verdict.line}" if verdict.line is not None else "ok"])
            self._queue.append((verdict.line, verdict.command, False))
        else:
            self._queue.append((verdict.line, verdict.command, True))

    def _reject(self, error: str, got: int | None) -> None:
        stats = self.stats
        stats.resends_requested += 1
        emulation = self.emulation
        if error == ERR_CHECKSUM:
            stats.checksum_errors += 1
            template = emulation.checksum_error
        elif error == ERR_LINE_NUMBER:
            stats.line_number_errors += 1
            template = emulation.line_number_error
        else:
            stats.other_line_errors += 1
            template = emulation.missing_checksum_error if error == ERR_NO_CHECKSUM else emulation.checksum_error
        last = self.checker.last_line
        lines = [template.format(last=last, expected=last + 1, got=got)] if template else []
        if emulation.resend:
            lines.append(emulation.resend.format(line=last + 1))
        if self.profile.resend_ok:
            lines.append("ok")
        if lines:
            self._send(lines)

    # ------------------------------------------------------------------ injected faults and events

    def kill(self, message: str | None = None) -> None:
        """Stop as Marlin's kill() does: say why, then answer nothing more until a reset."""
        if self.halted:
            return
        message = message or self.emulation.kill_message
        self._halt([self.emulation.error.format(message=message)], message)

    def thermal_runaway(self) -> None:
        self._halt(list(self.emulation.thermal_runaway), "thermal runaway")

    def _halt(self, lines: list[str], reason: str) -> None:
        self.halted = True
        self._ring.clear()
        self._queue.clear()
        self._send(lines)
        self.stop()
        self._log.warning("virtual printer halted", reason=reason)

    def runout(self) -> None:
        """The filament sensor trips: the firmware tells the host, which pauses the job."""
        self._send(list(self.emulation.filament_runout))

    def host_action(self, action: str) -> None:
        """A button on the printer asks the host for something (pause, resume, cancel…)."""
        self._send([f"//action:{action}"])

    def stop(self) -> None:
        """Power off: nothing more runs or reports."""
        for task in (self._autoreport, self._waiting):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self._autoreport = self._waiting = None
        self._end_keepalive()

    def temperatures(self) -> dict[str, tuple[float, float]]:
        now = self.now()
        return {"T0": (self.hotend.at(now), self.hotend.target), "B": (self.bed.at(now), self.bed.target)}

    # ------------------------------------------------------------------ running commands

    def _ok(self, line: int | None) -> str:
        if not self.advanced_ok:
            return "ok"
        number = f" N{line}" if line is not None else ""
        return f"ok{number} P{self._planner_free()} B{self.bufsize - len(self._queue)}"

    def _planner_free(self) -> int:
        now = time.monotonic()
        while self._planner and self._planner[0] <= now:
            self._planner.popleft()
        return max(0, self.planner_slots - len(self._planner))

    def _execute(self, command: str) -> Result | Coroutine[Any, Any, Result]:
        """Run one command: its printed lines and ok line (None: the usual ok), or the wait that yields them."""
        code, params = parse_params(command)
        now = self.now()
        match code:
            case "G0" | "G1" | "G2" | "G3":
                duration = self.motion.move(params) / self.speed_factor
                if not self._plan(duration):
                    return self._plan_when_free(duration)
            case "G28":
                self.motion.set_position({"X": 0.0, "Y": 0.0, "Z": 0.0})
                return self._waited(self._drain_planner, 3.0)
            case "G4":
                return self._waited(self._drain_planner, params.get("P", 0.0) / 1000.0 + params.get("S", 0.0))
            case "M400":
                if self._planner_busy():
                    return self._waited(self._drain_planner)
            case "G90" | "G91":
                self.motion.relative = code == "G91"
            case "M82" | "M83":
                self.motion.relative_e = code == "M83"
            case "G92":
                self.motion.set_position(params)
            case "M104" | "M109":
                self.hotend.set_target(params.get("S", params.get("R", 0.0)), now)
                if code == "M109":
                    return self._waited(partial(self._wait_heater, self.hotend, cooling="R" in params))
            case "M140" | "M190":
                self.bed.set_target(params.get("S", params.get("R", 0.0)), now)
                if code == "M190":
                    return self._waited(partial(self._wait_heater, self.bed, cooling="R" in params))
            case "M105":
                report = self._temperature_report()
                if self.emulation.ok_temperatures:
                    return [], f"ok {report}"
                return [report], "ok"
            case "M114":
                return [self.motion.report()], None
            case "M115":
                report = self._firmware_report()
                if self.emulation.firmware_on_ok:
                    return [], f"ok {report[0]}"
                return report, None
            case "M110":
                self.checker.last_line = int(params.get("N", 0))
            case "M155":
                self._set_autoreport(params.get("S", 0.0))
            case "M108" | "M410":
                pass
            case "M112":
                # Without the emergency parser M112 waits its turn like any command.
                self.kill()
            case "M20":
                return self.card.listing(), None
            case "M23":
                return self.card.select(command.split(None, 1)[1] if " " in command else ""), None
            case "M24":
                self.card.start()
            case "M25":
                self.card.pause()
            case "M524":
                self.card.abort()
            case "M27":
                return [self.card.status()], None
            case _ if code in _QUIET:
                pass
            case _:
                return [self.emulation.unknown_command.format(command=command)], None
        return [], None

    async def _waited(self, first: Callable[[], Coroutine[Any, Any, None]], then_s: float = 0.0) -> Result:
        await first()
        await self._sleep(then_s)
        return [], None

    async def _plan_when_free(self, duration_s: float) -> Result:
        """A move into a full planner: Marlin waits in the handler until the oldest move is done."""
        planner = self._planner
        await self._wait(planner[0] - time.monotonic())
        if planner:
            planner.popleft()
        self._plan(duration_s)
        return [], None

    def _firmware_report(self) -> list[str]:
        emulation = self.emulation
        if emulation.firmware_on_ok:
            return [f"FIRMWARE_NAME:{emulation.firmware_name}"]
        head = (f"FIRMWARE_NAME:{emulation.firmware_name} SOURCE_CODE_URL:{emulation.firmware_url} "
                f"PROTOCOL_VERSION:1.0 MACHINE_TYPE:{self.name} EXTRUDER_COUNT:1 "
                f"UUID:00000000-0000-4000-8000-000000000000")
        return [head, *(f"Cap:{name}:{on}" for name, on in self.capabilities.items())]

    def _temperature_report(self) -> str:
        now = self.now()
        hotend, bed = self.hotend, self.bed
        return self.emulation.temperature_report.format(
            T0=hotend.at(now), T0_target=hotend.target, T0_power=127 if hotend.target > hotend.actual else 0,
            B=bed.at(now), B_target=bed.target, B_power=127 if bed.target > bed.actual else 0)

    async def _wait_heater(self, heater: HeaterModel, cooling: bool) -> None:
        """Block like M109/M190, printing the temperatures every simulated second."""
        report_every = max(1.0 / self.speed_factor, 0.05)
        self._break_wait = False
        while not self._break_wait and not self.halted:
            remaining = heater.time_to_reach(self.now(), cooling=cooling) / self.speed_factor
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, report_every))
            self._send([f"{self._temperature_report()}{self.emulation.heating_report_suffix}"])

    def _set_autoreport(self, interval_s: float) -> None:
        if self._autoreport is not None:
            self._autoreport.cancel()
            self._autoreport = None
        if interval_s > 0:
            # M155 counts real seconds: it paces a display, not the simulated physics.
            self._autoreport = asyncio.create_task(self._autoreport_loop(max(interval_s, 0.05)))

    async def _autoreport_loop(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self._send([self._temperature_report()])

    def _plan(self, duration_s: float) -> bool:
        """Queue a move of ``duration_s`` real seconds if the planner has room; False when it is full."""
        now = time.monotonic()
        planner = self._planner
        while planner and planner[0] <= now:
            planner.popleft()
        if len(planner) >= self.planner_slots:
            return False
        start = planner[-1] if planner and planner[-1] > now else now
        planner.append(start + duration_s)
        return True

    def _planner_busy(self) -> bool:
        return bool(self._planner) and self._planner[-1] > time.monotonic()

    async def _drain_planner(self) -> None:
        if self._planner:
            await self._wait(max(0.0, self._planner[-1] - time.monotonic()))
            self._planner.clear()

    async def _sleep(self, simulated_s: float) -> None:
        if simulated_s > 0:
            await self._wait(simulated_s / self.speed_factor)

    async def _wait(self, seconds: float) -> None:
        """Wait inside a command: the host hears ``busy`` every keep-alive period meanwhile."""
        if seconds <= 0:
            return
        period = max(self.emulation.busy_interval_s / self.speed_factor, 0.02)
        if seconds > period and self.emulation.busy:
            self._keepalive = asyncio.get_running_loop().call_later(period, self._busy, period)
        try:
            await asyncio.sleep(seconds)
        finally:
            self._end_keepalive()

    def _busy(self, period: float) -> None:
        self._send([self.emulation.busy])
        self._keepalive = asyncio.get_running_loop().call_later(period, self._busy, period)

    def _end_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
