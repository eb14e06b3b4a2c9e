"""A printer on a serial port speaking G-code (Marlin, Prusa, RepRapFirmware, Smoothieware, Repetier, Klipper's pty).

This module is the policy: jobs streamed from a file or printed from the
printer's SD card, pause/resume/cancel and emergency stop, what the firmware's
words mean (a halt, a restart, a host action like a filament runout), and the
states the hub sees. The running job's record and its events are
``serial_job``; how a firmware halts and comes back is ``serial_halt``; the SD
card's questions are ``serial_sd``; the protocol is ``agent.serial.host``; the port, the greeting
and the answer watchdog are ``agent.serial.connection``; what differs between
firmwares is the profile (``firmware-profiles/*.toml``).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import structlog

from agent.serial.actions import PrinterMessages
from agent.serial.connection import Connection
from agent.serial.console import Console, ConsoleInterrupted
from agent.serial.gcode import GcodeError, GcodeFile, prepare_lines
from agent.serial.host import HostEngine, Outcome
from agent.serial.pacing import Pacing
from agent.serial.profiles import load_profile
from agent.serial.responses import Dialect, Kind, Reply
from agent.serial.sdcard import SdFile
from protocol.messages import (
    ConsoleOutput,
    DeviceError,
    DeviceInfo,
    DeviceState,
    DeviceStatus,
    Heater,
    Telemetry,
)

from .base import CommandRejected, Device, Emitter
from .serial_halt import HaltWatch, refusal
from .serial_job import JobTracker
from .serial_sd import SdCard

log = structlog.get_logger("farmhand.agent.serial")

__all__ = ["ConsoleInterrupted", "SerialGcodeDevice"]


class SerialGcodeDevice(Device):
    def __init__(
        self,
        device_id: str,
        emitter: Emitter,
        *,
        port: str,
        baud: int = 115200,
        profile: str = "marlin2",
        model: str | None = None,
        poll_interval_s: float = 2.0,
        answer_timeout_s: float | None = None,
        pacing: Pacing = "auto",
    ) -> None:
        super().__init__(device_id, emitter)
        self.port = port
        self.baud = baud
        self.profile = p = load_profile(profile)
        self.model = model
        self.poll_interval_s = poll_interval_s
        self.dialect = Dialect.from_profile(p)
        self.engine = HostEngine(p.rx_buffer, checksums=p.checksums, one_in_flight=p.flow == "one",
                                 resend_ok=p.resend_ok, classify=self.dialect.classify,
                                 temperature_command=p.temperature_command,
                                 streaming_commands=tuple(p.streaming_commands))
        self.connection = Connection(device_id, port, baud, p, self.engine, self.dialect, self,
                                     poll_interval_s=poll_interval_s,
                                     answer_timeout_s=answer_timeout_s or p.answer_timeout_s, pacing=pacing)
        self.sd = SdCard(self.engine, self.connection)
        self.jobs = JobTracker(device_id, emitter, self.engine, self.sd.tracker)
        self.messages = PrinterMessages()
        self._state = DeviceState.DISCONNECTED
        self._error: str | None = None
        self._temps: dict[str, Heater] = {}
        self._last_telemetry = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self.console = Console()
        self.halt = HaltWatch(p)
        self._log = log.bind(device=device_id, port=port)

    # ------------------------------------------------------------------ Device

    def info(self) -> DeviceInfo:
        return DeviceInfo(id=self.id, kind="serial_gcode", model=self.model, firmware=self.connection.identity.firmware,
                          capabilities=list(self.connection.identity.capabilities))

    def status(self) -> DeviceStatus:
        return DeviceStatus(device=self.id, state=self._state, job_id=self.jobs.id,
                            progress=self.jobs.progress(), temperatures=dict(self._temps), error=self._error)

    @property
    def state(self) -> DeviceState:
        return self._state

    async def open(self) -> None:
        if not self._tasks:
            self._tasks = self.connection.tasks(self.id)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.engine.reset()
        self._interrupted("the agent closed the printer's port")
        self._set_state(DeviceState.DISCONNECTED)

    async def start_job(self, job_id: str, path: Path) -> None:
        self._require((DeviceState.IDLE,), "start a job")
        try:
            job = await asyncio.to_thread(GcodeFile.scan, Path(path), paren_comments=self.profile.paren_comments,
                                          max_line_bytes=self.profile.max_line_bytes)
        except GcodeError as exc:
            raise CommandRejected(str(exc)) from None
        except OSError as exc:
            raise CommandRejected(f"cannot read the job file: {exc}") from None
        self._require((DeviceState.IDLE,), "start a job")
        self.engine.start_job(job, self.profile.finish_script)
        self._begin(job_id, job.count)

    async def sd_files(self) -> list[SdFile]:
        """The files on the printer's SD card (M20)."""
        self._require((DeviceState.IDLE,), "list the SD card")
        return await self.sd.files()

    async def start_sd_job(self, job_id: str, name: str) -> None:
        """Print a file from the printer's own SD card (M23, M24): the firmware reads it, the host watches."""
        self._require((DeviceState.IDLE,), "start a job")
        await self.sd.select(name)
        self._require((DeviceState.IDLE,), "start a job")
        self.engine.command("M24")
        self._begin(job_id, None)

    async def send_gcode(self, command_id: str, lines: list[str]) -> None:
        """Operator console: run ``lines`` between jobs and emit, as one ConsoleOutput, what the firmware said.

        While the firmware is halted, only its recovery commands (Klipper's FIRMWARE_RESTART) are taken.
        """
        try:
            commands = prepare_lines(lines, paren_comments=self.profile.paren_comments,
                                     max_line_bytes=self.profile.max_line_bytes, where="console")
        except GcodeError as exc:
            raise CommandRejected(str(exc)) from None
        if not self._recovering(commands.commands):
            self._require((DeviceState.IDLE, DeviceState.PAUSED), "run console commands")
        if not commands.count:
            raise CommandRejected("no command to send: every line is empty or a comment")
        request = self.console.open(command_id, commands.count)
        for command in commands.commands:
            self.engine.command(command.decode("utf-8", "surrogateescape"), tag=request)
        self.connection.pump()
        try:
            await request.future
        finally:
            self.emitter.event(ConsoleOutput(device=self.id, command_id=command_id,
                                             lines=self.console.close(request)))

    async def pause(self) -> None:
        self._require((DeviceState.PRINTING,), "pause")
        self._pause("requested")

    async def resume(self) -> None:
        self._require((DeviceState.PAUSED,), "resume")
        self._resume()

    async def cancel(self) -> None:
        self._require((DeviceState.PRINTING, DeviceState.PAUSED), "cancel")
        self._cancel("cancelled")

    async def emergency_stop(self) -> None:
        if self.connection.link is None:
            raise CommandRejected("the printer is not connected")
        command = self.profile.emergency_stop
        if self.connection.emergency_parser:
            self.connection.write_now(self.engine.urgent(command))
            self._enter_error("emergency stop", halted=True)
        else:
            # The firmware reads M112 in turn: send it next, and nothing of the job after it.
            self.engine.drop_job()
            self.engine.command(command, first=True)
            self.connection.pump()
            self._enter_error("emergency stop", reset=False)

    # ------------------------------------------------------------------ policy

    def _recovering(self, commands: list[bytes]) -> bool:
        """Whether these console lines bring a halted firmware back, and it can hear them now."""
        return (self._state is DeviceState.ERROR and self.connection.link is not None
                and not self.connection.greeting and self.halt.recovers(commands))

    def _require(self, states: tuple[DeviceState, ...], what: str) -> None:
        if self._state not in states:
            detail = f": {self._error}" if self._error else ""
            raise CommandRejected(f"cannot {what}: the printer is {self._state.value}{detail}")

    def _set_state(self, state: DeviceState, error: str | None = None) -> None:
        self._state = state
        self._error = error
        self.emitter.status(self.status())

    def _begin(self, job_id: str, lines: int | None) -> None:
        self.jobs.begin(job_id, lines)
        self._set_state(DeviceState.PRINTING)
        self.connection.pump()

    def _pause(self, reason: str, *, script: bool = True) -> None:
        # Lines already in the firmware's buffer run first; the park script follows them.
        self.engine.hold(True)
        if self.jobs.on_sd:
            self.engine.command("M25")
        if script:
            self._script(self.profile.pause_script)
        self.jobs.paused(reason)
        self._set_state(DeviceState.PAUSED)

    def _resume(self, *, script: bool = True) -> None:
        if self.messages.prompt is not None:
            # The printer is asking (filament runout: "Continue?"); resuming answers its first choice.
            self.engine.command("M876 S0")
            self.messages.prompt = None
        if script:
            self._script(self.profile.resume_script)
        if self.jobs.on_sd:
            self.engine.command("M24")
        self.engine.hold(False)
        self.jobs.resumed()
        self._set_state(DeviceState.PRINTING)
        self.connection.pump()

    def _cancel(self, reason: str) -> None:
        if self.jobs.on_sd:
            self.engine.command("M524")
        self.engine.drop_job()
        heating = tuple(self.profile.heating_commands)
        if self.connection.emergency_parser and self.engine.in_flight_command(heating):
            # A heating wait would hold the cancel script until the target is reached; M108 ends it now.
            self.connection.write_now(self.engine.urgent(self.profile.break_wait))
        if self.connection.emergency_parser and self.profile.cancel_quick_stop:
            self.connection.write_now(self.engine.urgent(self.profile.quick_stop))
        self._script(self.profile.cancel_script)
        self.jobs.failed(reason, cancelled=True)
        self._set_state(DeviceState.IDLE)

    def _script(self, lines: list[str]) -> None:
        for text in lines:
            self.engine.command(text)
        self.connection.pump()

    def _interrupted(self, reason: str) -> None:
        """Whatever was running on the printer is over: the job fails, console requests fail."""
        self.jobs.failed(reason)
        self.console.interrupt(reason)

    def _enter_error(self, message: str, *, reset: bool = True, halted: bool = False) -> None:
        """The firmware has stopped (or we stopped it): fail the job, say why, send nothing until it is back.

        ``halted``: the firmware said so itself. Said once: a firmware that goes on
        answering (Klipper) refuses the lines already sent one by one, each with the
        halt's reason; they are counted in this one report, not repeated.
        """
        if self._state is DeviceState.ERROR:
            self.halt.refused += 1
            self._log.debug("the halted firmware refused a line", message=message)
        else:
            message = self.halt.halted(message, self.engine.in_flight, said_by_firmware=halted)
            self._interrupted(message)
            self.emitter.event(DeviceError(device=self.id, message=message, job_id=self.jobs.id))
        if reset:
            self.engine.reset()
            if self.halt.greets_after(halted):
                # A firmware that restarts (reset button, M999, a power cycle) answers the hello again.
                self.connection.restart_greeting()
        if self._state is not DeviceState.ERROR:
            self._set_state(DeviceState.ERROR, message)
            self._log.error("printer halted", message=message)

    def _complete(self) -> None:
        self.jobs.completed()
        self._set_state(DeviceState.IDLE)

    def _stream_failed(self, reason: str) -> None:
        """The engine cannot go on (a resend it cannot serve): end the job, renumber, stay usable."""
        self._log.error("streaming failed", reason=reason)
        self.engine.reset()
        self._interrupted(reason)
        self.emitter.event(DeviceError(device=self.id, message=reason))
        self.engine.sync()
        # Send the sync now: until it is out, the firmware's answers to the lost lines have no numbering to land in.
        self.connection.pump()
        self._set_state(DeviceState.IDLE)

    # ------------------------------------------------------------------ the connection's news

    def connection_ready(self) -> None:
        self.sd.reconnected()
        self._set_state(DeviceState.IDLE)

    def connection_lost(self, reason: str) -> None:
        self._interrupted(f"lost the connection to the printer: {reason}")
        self._set_state(DeviceState.DISCONNECTED)

    def connection_failed(self, message: str) -> None:
        self._enter_error(message)

    def info_changed(self) -> None:
        # The node re-announces a device whose info changed when it publishes its status.
        self.emitter.status(self.status())

    def streaming(self) -> bool:
        return self._state is DeviceState.PRINTING and self.engine.job_active

    def poll_due(self) -> None:
        if self.jobs.on_sd and self._state is DeviceState.PRINTING:
            self.sd.ask_position()

    def every_line(self) -> bool:
        return bool(self.console.requests) or self.halt.reason is not None

    def oks_heard(self) -> None:
        if self.halt.reason is not None and not self.engine.awaiting:
            # Every line sent was answered and none said why it halted: its own words are all there is.
            self._enter_error(self.halt.reason, halted=True)
            return
        self.jobs.lines_answered()

    def connection_line(self, text: str, out: Outcome) -> None:
        reply = out.reply
        kind = reply.kind
        self.console.heard(text, kind)
        if self.engine.acked:
            self.console.answered(self.engine.acked)
        if kind is Kind.OK:
            if reply.temperatures:
                self._on_temperatures(reply.temperatures)
            if out.job_done and self.jobs.running and self.halt.reason is None:
                self._complete()
            else:
                self.oks_heard()
            return
        if out.failure:
            self._stream_failed(out.failure)
        elif kind is Kind.ERROR:
            self._on_error(reply)
        elif kind is Kind.TEMPERATURE:
            self._on_temperatures(reply.temperatures or {})
        elif kind is Kind.START:
            self._firmware_restarted()
        elif kind is Kind.STATE:
            self._on_state(reply)
        elif kind is Kind.ACTION:
            self._on_action(reply)
        elif kind is Kind.SD:
            self._on_sd(reply)
        elif kind is Kind.OTHER:
            self.sd.tracker.on_other(reply.text)

    def _firmware_restarted(self) -> None:
        self._log.warning("the firmware restarted")
        self.engine.reset()
        if self.jobs.running:
            reason = "printer reset: the firmware restarted during the job"
            self.emitter.event(DeviceError(device=self.id, message=reason))
            self._interrupted(reason)
            self._set_state(DeviceState.IDLE)
        else:
            self._interrupted("printer reset")
        self.connection.restart_greeting()

    def _on_error(self, reply: Reply) -> None:
        if reply.fatal:
            self._enter_error(reply.message, halted=True)
        elif reply.line_error:
            self._log.debug("line rejected", error=reply.message)
        elif self._state is DeviceState.ERROR:
            self._log.info("firmware error while halted", error=reply.message)
        else:
            self._refused(reply)

    def _refused(self, reply: Reply) -> None:
        """The firmware refused the command it is answering and goes on: say which."""
        message, command = refusal(reply, self.engine.answering())
        self._log.warning("firmware error", error=reply.message, command=command)
        self.emitter.event(DeviceError(device=self.id, message=message, job_id=self.jobs.id, command=command))

    def _on_state(self, reply: Reply) -> None:
        """The firmware announced its state (Klipper's "// Klipper state: …")."""
        state = reply.name
        self._log.info("firmware state", state=state)
        if state == "halted" and self._state is not DeviceState.ERROR:
            # Its reason is the answer to the next line; send no more of the job meanwhile.
            self.halt.reason = reply.message
            self.engine.hold(True)
            if not self.engine.awaiting:
                self._enter_error(reply.message, halted=True)
        elif state == "restarting" and self._state is not DeviceState.ERROR:
            self._firmware_restarted()
        elif state == "ready" and self._state is DeviceState.ERROR:
            # Back after a halt (FIRMWARE_RESTART, from our console or anyone's): greet it, then it is idle.
            self.connection.restart_greeting()

    def _on_action(self, reply: Reply) -> None:
        """``//action:`` lines: the printer (its buttons, its sensors) asks the host to act."""
        self._log.info("host action", action=reply.name, args=reply.message)
        decision = self.messages.decide(reply.name, reply.message, printing=self._state is DeviceState.PRINTING,
                                        paused=self._state is DeviceState.PAUSED)
        if decision.act == "pause":
            self._pause(decision.reason, script=decision.script)
        elif decision.act == "resume":
            self._resume(script=decision.script)
        elif decision.act == "cancel":
            self._cancel(decision.reason)
        if decision.alert:
            self.emitter.event(DeviceError(device=self.id, message=decision.alert))

    def _on_sd(self, reply: Reply) -> None:
        event = self.sd.heard(reply)
        if not self.jobs.on_sd:
            return
        if event == "done":
            self._complete()
        elif event == "progress":
            self.jobs.sd_progressed()

    def _on_temperatures(self, temps: dict[str, Heater]) -> None:
        self._temps.update(temps)
        # A heating wait reports every (simulated) second; the hub needs no more than the poll rate.
        now = time.monotonic()
        if now - self._last_telemetry < self.poll_interval_s / 2:
            return
        self._last_telemetry = now
        self.emitter.telemetry(Telemetry(device=self.id, temperatures=dict(self._temps), progress=self.jobs.progress(),
                                         lines_sent=self.engine.lines_sent if self.jobs.running else None))
