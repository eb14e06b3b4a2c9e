"""A printer on a serial port speaking G-code (Marlin, Prusa, Klipper's pty): the ``Device`` for it.

This module is the plumbing and the policy: it opens the port (and keeps
trying while the printer is unplugged), greets the firmware, moves bytes
between the port and ``HostEngine``, and turns what happens into device states
and events. The protocol itself lives in ``agent.serial.host``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import serial
import serial_asyncio
import structlog

from agent.serial.gcode import GcodeError, prepare_file
from agent.serial.host import HostEngine, Outcome
from agent.serial.profiles import load_profile
from agent.serial.responses import Kind, Reply, classify
from protocol.messages import (
    DeviceError,
    DeviceInfo,
    DeviceState,
    DeviceStatus,
    Heater,
    JobCompleted,
    JobFailed,
    JobPaused,
    JobProgress,
    JobResumed,
    JobStarted,
    Telemetry,
)
from protocol.mqtt import backoff_delay

from .base import CommandRejected, Device, Emitter

log = structlog.get_logger("farmhand.agent.serial")

HELLO_RETRY_S = 2.0
PROGRESS_EVERY_S = 1.0
READ_CHUNK = 4096


@dataclass(slots=True)
class _Job:
    id: str
    lines: int
    started: float
    last_progress: float


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
    ) -> None:
        super().__init__(device_id, emitter)
        self.port = port
        self.baud = baud
        self.profile = load_profile(profile)
        self.model = model
        self.poll_interval_s = poll_interval_s
        self.engine = HostEngine(self.profile.rx_buffer, checksums=self.profile.checksums,
                                 fatal_markers=tuple(self.profile.fatal_errors))
        self._fatal = tuple(self.profile.fatal_errors)
        self._state = DeviceState.DISCONNECTED
        self._error: str | None = None
        self._temps: dict[str, Heater] = {}
        self._last_telemetry = 0.0
        self._job: _Job | None = None
        self._firmware: str | None = None
        self._capabilities: list[str] = []
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._greeting = False
        self._hello_timer: asyncio.TimerHandle | None = None
        self.bad_lines = 0
        self._log = log.bind(device=device_id, port=port)

    # ------------------------------------------------------------------ Device

    def info(self) -> DeviceInfo:
        return DeviceInfo(id=self.id, kind="serial_gcode", model=self.model, firmware=self._firmware,
                          capabilities=list(self._capabilities))

    def status(self) -> DeviceStatus:
        return DeviceStatus(device=self.id, state=self._state, job_id=self._job.id if self._job else None,
                            progress=self._progress(), temperatures=dict(self._temps), error=self._error)

    @property
    def state(self) -> DeviceState:
        return self._state

    async def open(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._connect_loop(), name=f"serial {self.id}"),
                           asyncio.create_task(self._poll_loop(), name=f"serial poll {self.id}")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.engine.reset()
        self._end_job("the agent closed the printer's port")
        self._set_state(DeviceState.DISCONNECTED)

    async def start_job(self, job_id: str, path: Path) -> None:
        self._require((DeviceState.IDLE,), "start a job")
        try:
            job = await asyncio.to_thread(prepare_file, Path(path), paren_comments=self.profile.paren_comments,
                                          max_line_bytes=self.profile.max_line_bytes)
        except GcodeError as exc:
            raise CommandRejected(str(exc)) from None
        except OSError as exc:
            raise CommandRejected(f"cannot read the job file: {exc}") from None
        self._require((DeviceState.IDLE,), "start a job")
        self.engine.start_job(job, self.profile.finish_script)
        now = time.monotonic()
        self._job = _Job(job_id, job.count, now, now)
        self.emitter.event(JobStarted(device=self.id, job_id=job_id, lines_total=job.count))
        self._set_state(DeviceState.PRINTING)
        self._log.info("job started", job_id=job_id, lines=job.count)
        self._pump()

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
        if self._writer is None:
            raise CommandRejected("the printer is not connected")
        # Sent outside the numbering and the buffer count: Marlin's emergency parser acts on it as it arrives.
        self._writer.write(self.profile.emergency_stop.encode() + b"\n")
        self._halt("emergency stop")

    # ------------------------------------------------------------------ policy

    def _require(self, states: tuple[DeviceState, ...], what: str) -> None:
        if self._state not in states:
            detail = f": {self._error}" if self._error else ""
            raise CommandRejected(f"cannot {what}: the printer is {self._state.value}{detail}")

    def _set_state(self, state: DeviceState, error: str | None = None) -> None:
        self._state = state
        self._error = error
        self.emitter.status(self.status())

    def _progress(self) -> float | None:
        if self._job is None:
            return None
        return self.engine.lines_done / self._job.lines if self._job.lines else 0.0

    def _pause(self, reason: str) -> None:
        assert self._job is not None
        # Lines already in the firmware's buffer run first; the park script follows them.
        self.engine.hold(True)
        self._script(self.profile.pause_script)
        self.emitter.event(JobPaused(device=self.id, job_id=self._job.id, reason=reason))
        self._set_state(DeviceState.PAUSED)
        self._log.info("job paused", job_id=self._job.id, reason=reason)

    def _resume(self) -> None:
        assert self._job is not None
        self._script(self.profile.resume_script)
        self.engine.hold(False)
        self.emitter.event(JobResumed(device=self.id, job_id=self._job.id))
        self._set_state(DeviceState.PRINTING)
        self._log.info("job resumed", job_id=self._job.id)
        self._pump()

    def _cancel(self, reason: str) -> None:
        self.engine.drop_job()
        self._script(self.profile.cancel_script)
        self._end_job(reason, cancelled=True)
        self._set_state(DeviceState.IDLE)

    def _script(self, lines: list[str]) -> None:
        for text in lines:
            self.engine.command(text)
        self._pump()

    def _end_job(self, reason: str, *, cancelled: bool = False) -> None:
        if self._job is None:
            return
        job, self._job = self._job, None
        self.emitter.event(JobFailed(device=self.id, job_id=job.id, reason=reason, cancelled=cancelled))
        self._log.warning("job ended", job_id=job.id, reason=reason, cancelled=cancelled,
                          lines_done=self.engine.lines_done)

    def _halt(self, message: str) -> None:
        """The firmware has stopped (or we stopped it): nothing more is sent until it restarts."""
        if self._state is DeviceState.ERROR:
            self._log.warning("firmware error while halted", message=message)
            return
        self.engine.reset()
        self._end_job(message)
        self.emitter.event(DeviceError(device=self.id, message=message))
        self._set_state(DeviceState.ERROR, message)
        self._log.error("printer halted", message=message)

    def _complete(self) -> None:
        assert self._job is not None
        job, self._job = self._job, None
        duration = round(time.monotonic() - job.started, 3)
        self.emitter.event(JobCompleted(device=self.id, job_id=job.id, duration_s=duration, lines=job.lines,
                                        resends=self.engine.resends))
        self._set_state(DeviceState.IDLE)
        self._log.info("job completed", job_id=job.id, lines=job.lines, duration_s=duration,
                       resends=self.engine.resends, lines_per_s=round(job.lines / duration, 1) if duration else None)

    def _stream_failed(self, reason: str) -> None:
        """The engine cannot go on (a resend it cannot serve): end the job, renumber, stay usable."""
        self._log.error("streaming failed", reason=reason)
        self.engine.reset()
        self._end_job(reason)
        self.emitter.event(DeviceError(device=self.id, message=reason))
        self.engine.sync()
        # Send the sync now: until it is out, the firmware's answers to the lost lines have no numbering to land in.
        self._pump()
        self._set_state(DeviceState.IDLE)

    # ------------------------------------------------------------------ connection

    async def _connect_loop(self) -> None:
        attempt = 0
        while True:
            try:
                reader, writer = await serial_asyncio.open_serial_connection(url=self.port, baudrate=self.baud)
            except (OSError, serial.SerialException) as exc:
                delay = backoff_delay(attempt, 0.5, 10.0)
                if attempt == 0:
                    self._log.warning("cannot open the port; retrying", error=str(exc))
                attempt += 1
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self._log.info("port open", baud=self.baud)
            reason = "the port closed"
            try:
                await self._session(reader, writer)
            except (OSError, serial.SerialException, ConnectionError) as exc:
                reason = str(exc) or type(exc).__name__
            finally:
                self._writer = None
                self._cancel_hello()
                with contextlib.suppress(Exception):
                    writer.close()
            self._lost(reason)
            await asyncio.sleep(backoff_delay(0, 0.5, 10.0))

    def _lost(self, reason: str) -> None:
        self._log.warning("printer connection lost", reason=reason)
        self.engine.reset()
        self._end_job(f"lost the connection to the printer: {reason}")
        self._set_state(DeviceState.DISCONNECTED)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.engine.reset()
        self._greeting = True
        self._hello()
        pending = b""
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:
                raise ConnectionError("the port closed")
            pending += data
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                self._on_line(raw)
            self._pump()

    def _hello(self) -> None:
        """Send the profile's hello until the firmware answers: a board that resets on open misses the first."""
        if not self._greeting or self._writer is None:
            return
        self._writer.write(self.profile.hello.encode() + b"\n")
        self._schedule_hello(HELLO_RETRY_S)

    def _schedule_hello(self, delay: float) -> None:
        self._cancel_hello()
        self._hello_timer = asyncio.get_running_loop().call_later(delay, self._hello)

    def _cancel_hello(self) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None

    def _greeted(self) -> None:
        self._greeting = False
        self._cancel_hello()
        self.engine.reset()
        self.engine.sync()
        self.engine.command("M115")
        self._log.info("printer answered")
        self._set_state(DeviceState.IDLE)

    def _firmware_restarted(self) -> None:
        self._log.warning("the firmware restarted")
        self.engine.reset()
        self._end_job("the printer restarted during the job")
        self._greeting = True
        self._hello()

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            if self._writer is not None and not self._greeting and self._state is not DeviceState.ERROR:
                if self.engine.poll(self.profile.temperature_command):
                    self._pump()

    def _pump(self) -> None:
        data = self.engine.take()
        if data and self._writer is not None:
            self._writer.write(data)

    # ------------------------------------------------------------------ what the firmware says

    def _on_line(self, raw: bytes) -> None:
        text = raw.decode("ascii", "replace").strip()
        if not text:
            return
        try:
            if self._greeting:
                self._on_greeting(classify(text, self._fatal))
            else:
                self._on_outcome(self.engine.receive(text))
        except Exception:
            # One line we cannot digest must not stop the printer's stream.
            self.bad_lines += 1
            self._log.exception("could not handle a line from the firmware", line=text[:200])

    def _on_greeting(self, reply: Reply) -> None:
        if reply.kind is Kind.OK:
            self._greeted()
        elif reply.kind is Kind.START:
            # The board just booted: a hello sent before this was lost in its bootloader.
            self._hello()
        elif reply.kind is Kind.ERROR and reply.fatal:
            self._halt(reply.message)
        else:
            self._log.debug("firmware says", line=reply.text)

    def _on_outcome(self, out: Outcome) -> None:
        reply = out.reply
        kind = reply.kind
        if kind is Kind.OK:
            if reply.temperatures:
                self._on_temperatures(reply.temperatures)
            if out.job_done and self._job is not None:
                self._complete()
            elif self._job is not None:
                now = time.monotonic()
                if now - self._job.last_progress >= PROGRESS_EVERY_S:
                    self._job.last_progress = now
                    self.emitter.event(JobProgress(device=self.id, job_id=self._job.id,
                                                   progress=self._progress() or 0.0,
                                                   lines_done=self.engine.lines_done))
            return
        if out.failure:
            self._stream_failed(out.failure)
        elif kind is Kind.RESEND:
            self._log.debug("resend requested", line=reply.line)
        elif kind is Kind.ERROR:
            self._on_error(reply)
        elif kind is Kind.TEMPERATURE:
            self._on_temperatures(reply.temperatures or {})
        elif kind is Kind.START:
            self._firmware_restarted()
        elif kind is Kind.FIRMWARE:
            self._firmware = (reply.fields or {}).get("FIRMWARE_NAME") or reply.text
            self._log.info("firmware", firmware=self._firmware)
        elif kind is Kind.CAPABILITY:
            if reply.enabled and reply.name not in self._capabilities:
                self._capabilities.append(reply.name)
        elif kind is Kind.ACTION:
            self._on_action(reply)
        else:
            self._log.debug("firmware says", line=reply.text)

    def _on_error(self, reply: Reply) -> None:
        if reply.fatal:
            self._halt(reply.message)
        elif reply.line_error:
            self._log.debug("line rejected", error=reply.message)
        else:
            self._log.warning("firmware error", error=reply.message)
            self.emitter.event(DeviceError(device=self.id, message=reply.message))

    def _on_action(self, reply: Reply) -> None:
        """``//action:`` lines: the printer's own buttons asking the host to pause, resume or cancel."""
        self._log.info("host action", action=reply.name, args=reply.message)
        if reply.name == "pause" and self._state is DeviceState.PRINTING:
            self._pause("paused on the printer")
        elif reply.name == "resume" and self._state is DeviceState.PAUSED:
            self._resume()
        elif reply.name == "cancel" and self._state in (DeviceState.PRINTING, DeviceState.PAUSED):
            self._cancel("cancelled on the printer")

    def _on_temperatures(self, temps: dict[str, Heater]) -> None:
        self._temps.update(temps)
        # A heating wait reports every (simulated) second; the hub needs no more than the poll rate.
        now = time.monotonic()
        if now - self._last_telemetry < self.poll_interval_s / 2:
            return
        self._last_telemetry = now
        self.emitter.telemetry(Telemetry(device=self.id, temperatures=dict(self._temps), progress=self._progress(),
                                         lines_sent=self.engine.lines_sent if self._job else None))
