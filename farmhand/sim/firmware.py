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

A halted Marlin answers nothing until it is reset. A halted Klipper (the
profile's ``halted_reply``) goes on reading: it refuses each command with the
halt's reason, still answers M105, and comes back on FIRMWARE_RESTART.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from agent.serial.profiles import FirmwareProfile

from .machine import Machine, Result, Wait
from .marlin import ERR_CHECKSUM, ERR_LINE_NUMBER, ERR_NO_CHECKSUM, LineChecker, parse_params
from .sdcard import SdCard

log = structlog.get_logger("farmhand.sim")

# How long a restarting firmware is away (Klippy takes about a second; a test needs no more than the gap).
RESTART_S = 0.05
_EMERGENCY = re.compile(rb"^\s*(?:N\d+\s*)?(M112|M108|M410)\b")
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
        parser = self.emulation.emergency_parser
        self.emergency_parser = bool(caps.get("EMERGENCY_PARSER")) if parser is None else parser
        self.checker = LineChecker(checksums=profile.checksums)
        self.machine = self._boot()
        self.halted = False
        """Stopped and silent until the port is opened again (Marlin's kill())."""
        self.shutdown: str | None = None
        """Stopped but answering, refusing commands with this reason (Klipper's shutdown)."""
        self._ring: deque[bytes] = deque()
        self._ring_bytes = 0
        self._carry = b""
        self._queue: deque[tuple[int | None, str, bool]] = deque()
        self._blocked = False
        self._waiting: asyncio.Task[None] | None = None
        self._sd_done = False

    def _boot(self) -> Machine:
        return Machine(emulation=self.emulation, send=self._send, card=self.card, speed_factor=self.speed_factor,
                       planner_slots=self.profile.planner_slots, name=self.name, capabilities=self.capabilities)

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
            self.machine.break_wait()
        elif code == b"M410":
            self.machine.quick_stop()

    def _step(self) -> None:
        """Marlin's main loop: parse what the queue has room for, run the head command, again, until one waits."""
        queue = self._queue
        while not self._blocked and not self.halted:
            self._drain()
            if not queue:
                return
            line, command, send_ok = queue[0]
            if command.split(" ", 1)[0].upper() in self.emulation.restart_commands:
                self._restart(send_ok)
                return
            outcome = self._execute(command)
            if isinstance(outcome, tuple):
                self._finish(outcome, line, send_ok)
            else:
                self._blocked = True
                self._waiting = asyncio.create_task(self._wait_then_finish(outcome, line, send_ok))

    async def _wait_then_finish(self, wait: Wait, line: int | None, send_ok: bool) -> None:
        outcome = await wait()
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
        if self.shutdown is None or self._runs_halted(verdict.command):
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
        """Stop as Marlin's kill() does (say why, then answer nothing more until a reset), or Klipper's shutdown."""
        if self.halted or self.shutdown is not None:
            return
        message = message or self.emulation.kill_message
        said = self.emulation.halt_lines
        self._halt([self.emulation.error.format(message=message)] if said is None else
                   [line.format(message=message) for line in said], message)

    def hang(self) -> None:
        """Stop answering without a word, as a firmware stuck in a loop does."""
        if not self.halted:
            self._halt([], "hang")

    def thermal_runaway(self) -> None:
        lines = list(self.emulation.thermal_runaway)
        # The reason a halted Klipper repeats is the error line's message.
        prefix = self.emulation.error.split("{message}")[0]
        reason = next((line[len(prefix):] for line in lines if prefix and line.startswith(prefix)), "thermal runaway")
        self._halt(lines, reason)

    def _halt(self, lines: list[str], reason: str) -> None:
        self.stop()
        if self.emulation.halted_reply and reason != "hang":
            # Klipper: what is queued is refused in turn (it never ran), and so is every line after it.
            self.shutdown = reason
            self._blocked = False
            for entry in reversed(self._queue):
                if self.executed and self.executed[-1] == entry[:2]:
                    self.executed.pop()
            asyncio.get_running_loop().call_soon(self._step)
        else:
            self.halted = True
            self._ring.clear()
            self._queue.clear()
        if lines:
            self._send(lines)
        self._log.warning("virtual printer halted", reason=reason)

    def _runs_halted(self, command: str) -> bool:
        code = command.split(" ", 1)[0].upper()
        return code in self.emulation.halted_runs or code in self.emulation.restart_commands

    def _restart(self, send_ok: bool) -> None:
        """FIRMWARE_RESTART: ok, then down for a moment; back with a fresh machine, nothing kept."""
        self._queue.popleft()
        self._send([*(["ok"] if send_ok else []), *self.emulation.restart_lines])
        self.stop()
        self._blocked = True
        asyncio.get_running_loop().call_later(RESTART_S, self._ready)

    def _ready(self) -> None:
        self.shutdown = None
        self.machine = self._boot()
        self._blocked = False
        self._send(list(self.emulation.ready_lines))
        self._step()

    def runout(self) -> None:
        """The filament sensor trips: the firmware tells the host, which pauses the job."""
        self._send(list(self.emulation.filament_runout))

    def request_resend(self, line: int) -> None:
        """Ask for ``line`` again, out of the blue, as a firmware that lost its count does."""
        self._send([self.emulation.resend.format(line=line), *(["ok"] if self.profile.resend_ok else [])])

    def idle(self) -> None:
        """Called every ``idle_wait_s``: a firmware with nothing queued says so (Repetier's "wait")."""
        if not self.halted and not self._queue and not self._ring and not self._blocked:
            self._send(["wait"])

    def host_action(self, action: str) -> None:
        """A button on the printer asks the host for something (pause, resume, cancel…)."""
        self._send([f"//action:{action}"])

    def stop(self) -> None:
        """Power off: nothing more runs or reports."""
        if self._waiting is not None and self._waiting is not asyncio.current_task():
            self._waiting.cancel()
        self._waiting = None
        self.machine.stop()

    def temperatures(self) -> dict[str, tuple[float, float]]:
        return self.machine.temperatures()

    # ------------------------------------------------------------------ running commands

    def _ok(self, line: int | None) -> str:
        if not self.advanced_ok:
            return "ok"
        number = f" N{line}" if line is not None else ""
        return f"ok{number} P{self.machine.planner_free()} B{self.bufsize - len(self._queue)}"

    def _execute(self, command: str) -> Result | Wait:
        """The board's own commands (line numbering, a kill in turn); the machine runs the rest."""
        if self.shutdown is not None and not self._runs_halted(command):
            return [line.format(message=self.shutdown) for line in self.emulation.halted_reply], None
        code, params = parse_params(command)
        if code == "M110":
            self.checker.last_line = int(params.get("N", 0))
            return [], None
        if code == "M112":
            # Without the emergency parser M112 waits its turn like any command.
            self.kill()
            return [], None
        return self.machine.execute(command)
