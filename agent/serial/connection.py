"""Keeping a conversation with a printer's firmware going: the port, the greeting, polls and the answer watchdog.

A ``Connection`` opens the port (and keeps trying while the printer is
unplugged), greets the firmware until it answers, reads who it is (M115) and
what it can do, polls temperatures or asks for autoreports, moves bytes between
the port and the ``HostEngine``, and probes a firmware that owes answers and
has gone quiet. What the lines *mean* for a job is the device's business: the
connection hands every line after the greeting to its ``Listener``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import serial
import structlog

from .host import HostEngine, Outcome
from .identity import FirmwareIdentity
from .link import SerialLink
from .pacing import Pacing
from .profiles import FirmwareProfile
from .responses import Dialect, Kind, Reply

log = structlog.get_logger("farmhand.agent.serial")

HELLO_RETRY_S = 2.0
# After the first answer to the hello, answers to earlier (retried) hellos may still come; they are let pass.
SETTLE_S = 0.2
RECONNECT_MAX_S = 10.0
# Sleep through answers while the wire has more than HOLD_MIN_S of lines still to clock out and the
# sleep gathers HOLD_ANSWERS answers or more; wake a guard time before the wire runs dry, never later
# than HOLD_MAX_S.
HOLD_MIN_S = 0.003
HOLD_ANSWERS = 1.5
HOLD_GUARD_LOOP_S = 0.002
HOLD_GUARD_THREAD_S = 0.001
HOLD_MAX_S = 0.05
# How often a serial thread tells the device that oks came (the device reports progress from them).
OKS_HEARD_EVERY_S = 0.25

# A line for the loop to digest: raw, or already received by the engine on the port's thread.
Pending = bytes | tuple[str, Outcome]


class Listener(Protocol):
    def connection_ready(self) -> None:
        """The firmware answered and the host has resynchronised: ready for jobs."""

    def connection_lost(self, reason: str) -> None:
        """The port closed (unplugged, the agent stopping)."""

    def connection_failed(self, message: str) -> None:
        """The firmware stopped (a fatal error while greeting) or stopped answering."""

    def connection_line(self, text: str, out: Outcome) -> None:
        """One line the firmware printed, and what the engine made of it."""

    def every_line(self) -> bool:
        """Whether every plain ok must come through ``connection_line`` (someone reads the console)."""

    def oks_heard(self) -> None:
        """Plain oks came that only the engine needed: no temperatures, no end of job, no tag."""

    def info_changed(self) -> None:
        """The firmware's name or capabilities became known or changed."""

    def streaming(self) -> bool:
        """Whether a job is streaming now (answers may then be read in batches)."""

    def poll_due(self) -> None:
        """A poll period passed (the device may ask for something of its own, like SD progress)."""


class Connection:
    def __init__(self, device_id: str, port: str, baud: int, profile: FirmwareProfile, engine: HostEngine,
                 dialect: Dialect, listener: Listener, *, poll_interval_s: float, answer_timeout_s: float,
                 pacing: Pacing = "auto") -> None:
        self.port = port
        self.baud = baud
        self.profile = profile
        self.engine = engine
        self.dialect = dialect
        self.listener = listener
        self.poll_interval_s = poll_interval_s
        self.answer_timeout_s = answer_timeout_s
        self.pacing = pacing
        self.wire_paced = pacing == "wire"
        """Whether reads are held back at the wire's pace; decided when the port opens."""
        self.link: SerialLink | None = None
        self.identity = FirmwareIdentity(profile)
        self.greeting = False
        self.probes_sent = 0
        self.bad_lines = 0
        self._heating = tuple(profile.heating_commands)
        self._settling = False
        self._hello_timer: asyncio.TimerHandle | None = None
        self._pending = b""
        self._last_answer = 0.0
        self._now = 0.0
        self._probes = 0
        self._wire_free = 0.0
        self._byte_s = 10.0 / baud
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handoff: list[Pending] | None = None
        self._oks_heard_due = 0.0
        self._log = log.bind(device=device_id, port=port)

    @property
    def emergency_parser(self) -> bool:
        return self.identity.emergency_parser

    def tasks(self, name: str) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._connect_loop(), name=f"serial {name}"),
                asyncio.create_task(self._poll_loop(), name=f"serial poll {name}"),
                asyncio.create_task(self._watch_loop(), name=f"serial watch {name}")]

    def write_now(self, data: bytes) -> None:
        """Past the engine's window and queue: what the firmware must see at once (M112, M108)."""
        if self.link is not None:
            self.link.write(data)

    def pump(self) -> None:
        link = self.link
        if link is None:
            return
        idle = not self.engine.awaiting
        data = self.engine.take()
        if data:
            now = time.monotonic()
            if idle:
                # The answer clock starts with the first line the firmware owes an answer for.
                self._last_answer = now
            self._wire_free = max(now, self._wire_free) + len(data) * self._byte_s
            link.write(data)

    def restart_greeting(self) -> None:
        """Say hello until the firmware answers again (it restarted, or stopped and may come back)."""
        self.greeting = True
        self._settling = False
        self._hello()

    # ------------------------------------------------------------------ the port

    async def _connect_loop(self) -> None:
        attempt = 0
        loop = self._loop = asyncio.get_running_loop()
        while True:
            lost: asyncio.Future[str] = loop.create_future()
            link = SerialLink(self.port, self.baud, self._on_data,
                              lambda reason, lost=lost: lost.done() or lost.set_result(reason))
            try:
                link.open()
            except (OSError, serial.SerialException) as exc:
                if attempt == 0:
                    self._log.warning("cannot open the port; retrying", error=str(exc))
                await asyncio.sleep(min(RECONNECT_MAX_S, 0.5 * 2 ** min(attempt, 5)))
                attempt += 1
                continue
            attempt = 0
            self.wire_paced = self.pacing == "wire" or (self.pacing == "auto" and link.has_uart())
            self._log.info("port open", baud=self.baud, profile=self.profile.name,
                           pacing="wire" if self.wire_paced else "none")
            self.link = link
            self._pending = b""
            self._handoff = None
            self.engine.reset()
            self.restart_greeting()
            try:
                reason = await lost
            finally:
                self.link = None
                self._cancel_hello()
                link.close()
            self._log.warning("printer connection lost", reason=reason)
            self.engine.reset()
            self.listener.connection_lost(reason)
            await asyncio.sleep(0.5)

    def _hello(self) -> None:
        """Send the profile's hello until the firmware answers: a board that resets on open misses the first."""
        if not self.greeting or self.link is None:
            return
        self.link.write(self.profile.hello.encode() + b"\n")
        self._cancel_hello()
        self._hello_timer = asyncio.get_running_loop().call_later(HELLO_RETRY_S, self._hello)

    def _cancel_hello(self) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None

    def _greeted(self) -> None:
        self._settling = True
        self._cancel_hello()
        self._hello_timer = asyncio.get_running_loop().call_later(SETTLE_S, self._settled)

    def _settled(self) -> None:
        self._hello_timer = None
        self.greeting = self._settling = False
        self.engine.reset()
        self.engine.sync()
        self.identity.restart()
        self.engine.command("M115")
        self.engine.poll(self.profile.temperature_command)
        self._log.info("printer answered")
        self.listener.connection_ready()
        self.pump()

    # ------------------------------------------------------------------ timers

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            if self.link is None or self.greeting:
                continue
            if not self.identity.autoreport:
                self.engine.poll(self.profile.temperature_command)
            self.listener.poll_due()
            self.pump()

    async def _watch_loop(self) -> None:
        """Probe a firmware that owes answers and has said nothing for ``answer_timeout_s``; give up after a few."""
        period = min(self.answer_timeout_s / 4, 0.5)
        while True:
            await asyncio.sleep(period)
            if self.link is None or self.greeting or not self.engine.awaiting:
                self._probes = 0
                continue
            silent = time.monotonic() - self._last_answer
            if silent < self.answer_timeout_s * (self._probes + 1):
                continue
            if self._probes >= self.profile.probe_limit:
                message = (f"the printer stopped answering: nothing for {silent:.1f} s and "
                           f"{self._probes} probes unanswered")
                self.engine.reset()
                self.listener.connection_failed(message)
                continue
            self._probe(f"nothing for {silent:.1f} s")

    def _probe(self, why: str) -> None:
        assert self.link is not None
        self._probes += 1
        self.probes_sent += 1
        self._log.warning("the printer owes answers; asking", why=why, probe=self._probes)
        self.link.write(self.engine.probe(self.profile.temperature_command))

    def _hold(self) -> None:
        """While a job streams and the wire has lines to clock out, let answers gather before reading them.

        Only over a wire: a pty has none, and holding there only leaves the firmware idle.

        Only when the wait should gather more than one answer (at the wire's pace of one
        line's bytes per answer): a hold costs about what a wake-up does, so holding for
        one answer (firmware without ADVANCED_OK and a small buffer has room for only a
        few lines) would cost more than it saves.
        """
        link = self.link
        if link is None or not self.wire_paced or not self.listener.streaming():
            return
        in_flight = self.engine.in_flight
        if not in_flight:
            return
        now = time.monotonic()
        ahead = self._wire_free - now
        # A port's thread sleeps to within a fraction of a millisecond; the loop's timers fire up to one late.
        wait = min(ahead - (HOLD_GUARD_THREAD_S if link.threaded else HOLD_GUARD_LOOP_S), HOLD_MAX_S)
        answer_every = self.engine.window_bytes / in_flight * self._byte_s
        if ahead > HOLD_MIN_S and wait >= HOLD_ANSWERS * answer_every:
            link.hold_reading(now + wait)

    # ------------------------------------------------------------------ what the firmware says

    def _on_data(self, data: bytes) -> None:
        *lines, self._pending = (self._pending + data).split(b"\n")
        self._now = time.monotonic()
        link = self.link
        if link is not None and link.threaded:
            self._on_lines_threaded(lines)
        else:
            self._on_lines(lines)

    def _on_lines(self, lines: list[Pending]) -> None:
        """Digest what the firmware said, in order; then send what now fits, and perhaps sleep a while."""
        # Most of what a streaming printer says is a plain ok that concerns the engine alone: the
        # listener hears of those once for the lot, the rest line by line, in order.
        plain_oks = 0
        quiet = not self.listener.every_line()
        engine = self.engine
        for raw in lines:
            if isinstance(raw, tuple):
                # Received on the port's thread already; what is left is the listener's part.
                self._digest(*raw)
                continue
            text = raw.decode("ascii", "replace").strip()
            if not text:
                continue
            try:
                if self.greeting:
                    self._on_greeting(self.dialect.classify(text))
                    continue
                out = engine.receive(text)
                if quiet and self._plain(out):
                    plain_oks += 1
                    continue
                self._digest(text, out)
            except Exception:
                # One line we cannot digest must not stop the printer's stream.
                self.bad_lines += 1
                self._log.exception("could not handle a line from the firmware", line=text[:200])
        if plain_oks:
            self._answered()
            self.listener.oks_heard()
        self.pump()
        self._hold()

    def _answered(self) -> None:
        """The firmware is alive and answering: the watchdog starts over."""
        self._last_answer = self._now
        self._probes = 0

    def _plain(self, out: Outcome) -> bool:
        """An ok that only the engine needed: no temperatures, no end of job, no tag, no M115 to close."""
        reply = out.reply
        return reply.kind is Kind.OK and not (reply.fields or reply.temperatures or out.job_done
                                              or self.identity.unfinished or self.engine.acked)

    def _on_lines_threaded(self, lines: list[bytes]) -> None:
        """On the port's thread (the loop asleep): the plain oks of a streaming job; the loop gets the rest.

        The engine takes each plain ok and the next lines go out, all without the loop.
        From the first line that the listener must hear (an error, a temperature,
        the end of the job), this line and every one after it go to the loop, in
        order, and so does whatever is read until the loop has digested them.
        """
        if self._handoff is not None:
            self._handoff.extend(lines)
            return
        if self.greeting or self.listener.every_line():
            self._hand_off(lines)
            return
        engine = self.engine
        plain_oks = 0
        for i, raw in enumerate(lines):
            text = raw.decode("ascii", "replace").strip()
            if not text:
                continue
            try:
                reply = engine.classify(text)
            except Exception:
                reply = None  # the loop's path logs and counts it
            if reply is None or reply.kind is not Kind.OK or reply.fields or reply.temperatures:
                self._hand_off(lines[i:])
                break
            out = engine.answer(reply)
            if not self._plain(out):
                self._hand_off([(text, out), *lines[i + 1:]])
                break
            plain_oks += 1
        if plain_oks:
            self._answered()
            if self._now >= self._oks_heard_due:
                self._oks_heard_due = self._now + OKS_HEARD_EVERY_S
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self.listener.oks_heard)
        if self._handoff is None:
            self.pump()
            self._hold()

    def _hand_off(self, lines: list[Pending]) -> None:
        assert self._loop is not None
        self._handoff = list(lines)
        self._loop.call_soon_threadsafe(self._take_handoff)

    def _take_handoff(self) -> None:
        lines, self._handoff = self._handoff, None
        if lines is not None and self.link is not None:
            self._now = time.monotonic()
            self._on_lines(lines)

    def _digest(self, text: str, out: Outcome) -> None:
        kind = out.reply.kind
        # Autoreported temperatures come while a firmware is stuck too; they prove nothing unless it is heating.
        if kind is not Kind.TEMPERATURE or self.engine.in_flight_command(self._heating):
            self._answered()
        if kind is Kind.FIRMWARE or (kind is Kind.OK and out.reply.fields):
            if self.identity.name(out.reply):
                self.listener.info_changed()
            self._log.info("firmware", firmware=self.identity.firmware)
        elif kind is Kind.OK:
            if self.identity.finished():
                # M115's ok: the firmware's name and capabilities are all in.
                self.listener.info_changed()
        elif kind is Kind.CAPABILITY:
            if self.identity.capability(out.reply):
                # The firmware reports on its own; polling would only take room from the job's lines.
                seconds = max(1, round(self.poll_interval_s))
                self.engine.command(self.profile.autoreport_command.format(seconds=seconds))
        elif kind is Kind.WAIT and self.engine.awaiting and self.link is not None and not self._probes:
            # An idle firmware with answers still owed to us: they were lost on the way.
            self._probe("the firmware says it waits")
        self.listener.connection_line(text, out)

    def _on_greeting(self, reply: Reply) -> None:
        if reply.kind is Kind.OK:
            if not self._settling:
                self._greeted()
        elif reply.kind is Kind.START:
            # The board just booted: a hello sent before this was lost in its bootloader.
            self._settling = False
            self._hello()
        elif reply.kind is Kind.ERROR and reply.fatal:
            self.listener.connection_failed(reply.message)
        else:
            self._log.debug("firmware says", line=reply.text)
