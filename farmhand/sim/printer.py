"""A virtual printer on a pseudo-terminal, for the demo, the tests and benchmarks.

It answers on a pty exactly the way a host sees a USB printer: a ``start``
banner when the port opens, line-number and checksum rules with errors,
resend requests and ``ok``, heaters that take time to heat and moves that take
time to run, both sped up by ``speed_factor``. Its dialect (buffer sizes,
wording, capabilities) comes from a firmware profile.

With ``baud`` set, the pty behaves like a UART at that speed: every byte
takes 10 bit times in each direction, so a line reaches the firmware only
when its last byte would have, and a reply reaches the host only when it
would have been clocked out. Pacing is by the event loop's timers (sleeping,
never spinning), accurate to about a millisecond per line and exact on
average, because each line's time is counted from the wire's own clock.

``noise`` corrupts one byte of a received line with that probability, so a
host's resend logic runs for real. ``executed`` lists every command the
firmware accepted, in order: the proof that a host delivered each line once.
This module is the pty and the wire; ``firmware`` is what the board does, and
``printer_cmd`` the `farmhand sim printer` command.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import random
import tty
from collections import deque
from pathlib import Path

import structlog

from agent.serial.profiles import FirmwareProfile, load_profile

from .firmware import PrinterStats, VirtualFirmware
from .sdcard import SdCard
from .uart import UartClock

__all__ = ["PrinterStats", "UartClock", "VirtualPrinter"]

log = structlog.get_logger("farmhand.sim")

# A board reset by the port opening boots for a moment; what the host sends meanwhile is lost.
BOOT_S = 0.05
# How often to look for a host while none holds the port (a closed pty slave cannot be waited on).
HOST_POLL_S = 0.02
# A line due within this much of now is handled now: the loop's timers fire up to a millisecond late anyway.
TIMER_SLACK_S = 0.0005


class VirtualPrinter:
    def __init__(
        self,
        link: str | Path,
        *,
        profile: str | FirmwareProfile = "marlin2",
        speed_factor: float = 100.0,
        noise: float = 0.0,
        seed: int | None = None,
        baud: int | None = None,
        rx_buffer: int | None = None,
        bufsize: int | None = None,
        advanced_ok: bool | None = None,
        name: str = "Farmhand Virtual Printer",
        sd_files: dict[str, bytes] | None = None,
    ) -> None:
        if speed_factor <= 0:
            raise ValueError("speed_factor must be > 0")
        if not 0.0 <= noise < 1.0:
            raise ValueError("noise is a probability in [0, 1)")
        if baud is not None and baud < 300:
            raise ValueError("baud must be at least 300")
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.link = Path(link)
        self.speed_factor = speed_factor
        self.noise = noise
        self.baud = baud
        self.rx_buffer = rx_buffer or self.profile.rx_buffer
        self.bufsize = bufsize or self.profile.command_queue
        self.advanced_ok = self.profile.advanced_ok if advanced_ok is None else advanced_ok
        self.name = name
        self.card = SdCard(dict(sd_files or {}))
        self.executed: list[tuple[int | None, str]] = []
        self.stats = PrinterStats()
        self._rng = random.Random(seed)
        self._master = -1
        self._tty = ""
        self._reader: asyncio.Task[None] | None = None
        self._booting: asyncio.TimerHandle | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._connected = False
        self._lose_oks = 0
        self._writing = False
        self._out = bytearray()
        self._reset_wire()
        self.firmware = self._new_firmware()

    def _reset_wire(self) -> None:
        self.uart = UartClock(self.baud) if self.baud else None
        self._rx_partial = bytearray()
        self._arrivals: deque[tuple[float, bytes]] = deque()
        self._rx_timer: asyncio.TimerHandle | None = None
        self._tx_queue: deque[tuple[float, bytes]] = deque()
        self._tx_timer: asyncio.TimerHandle | None = None

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
        self._reader = asyncio.create_task(self._read_loop(), name=f"sim-read {self.link}")
        log.info("virtual printer serving", link=str(self.link), tty=self._tty, profile=self.profile.name,
                 speed=self.speed_factor, noise=self.noise, baud=self.baud)

    async def stop(self) -> None:
        self._power_off()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
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

    # ------------------------------------------------------------------ what a test can make happen

    def inject_kill(self, message: str | None = None) -> None:
        """Make the firmware stop as Marlin's kill() does: print the error and answer nothing more."""
        self.firmware.kill(message)

    def inject_hang(self) -> None:
        """The firmware stops answering without a word (a crash, a stuck loop)."""
        self.firmware.hang()

    def inject_thermal_runaway(self) -> None:
        """Thermal protection trips: the firmware says so in its own words and halts."""
        self.firmware.thermal_runaway()

    def inject_reset(self) -> None:
        """The board resets by itself (a brown-out, the reset button): it boots again and greets."""
        self._power_off()
        self._boot()

    def inject_runout(self) -> None:
        """The filament sensor trips."""
        self.firmware.runout()

    def inject_resend_request(self, line: int) -> None:
        """The firmware asks for ``line`` again, whatever it was last given."""
        self.firmware.request_resend(line)

    def press(self, action: str) -> None:
        """A button on the printer: the firmware sends ``//action:<action>`` to the host."""
        self.firmware.host_action(action)

    def lose_oks(self, count: int) -> None:
        """The next ``count`` ok lines never reach the host, as if the cable ate them."""
        self._lose_oks += count

    @property
    def halted(self) -> bool:
        """Stopped by kill() (M112, an injected fault) until the host opens the port again."""
        return self.firmware.halted

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
        """(actual, target) per heater, as M105 would report them."""
        return self.firmware.temperatures()

    def record(self, path: Path) -> None:
        """Write the stats (one JSON line) and every accepted command (``line<TAB>command``) to ``path``."""
        stats = {name: getattr(self.stats, name) for name in self.stats.__dataclass_fields__}
        with open(path, "w", encoding="latin-1") as f:
            f.write(json.dumps(stats) + "\n")
            for number, command in self.executed:
                f.write(f"{'-' if number is None else number}\t{command}\n")

    # ------------------------------------------------------------------ the host's side of the pty

    def _new_firmware(self) -> VirtualFirmware:
        return VirtualFirmware(profile=self.profile, send=self._send, executed=self.executed, stats=self.stats,
                               card=self.card, speed_factor=self.speed_factor, rx_buffer=self.rx_buffer,
                               bufsize=self.bufsize, advanced_ok=self.advanced_ok, name=self.name,
                               link=str(self.link))

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
                await asyncio.sleep(HOST_POLL_S)
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
        self._connected = True
        self._power_off()
        self._boot()

    def _boot(self) -> None:
        self._reset_wire()
        self.firmware = self._new_firmware()
        if not self.profile.emulation.banner:
            # Boards with native USB (and Klipper's pty) do not reset when the port opens: they are just there.
            self._start_idle_waits()
            return
        self._booting = asyncio.get_running_loop().call_later(BOOT_S, self._booted)

    def _booted(self) -> None:
        self._booting = None
        self._send(list(self.profile.emulation.banner))
        self._start_idle_waits()

    def _start_idle_waits(self) -> None:
        every = self.profile.emulation.idle_wait_s
        if every > 0:
            self._idle = asyncio.get_running_loop().call_later(every, self._idle_wait, every)

    def _idle_wait(self, every: float) -> None:
        self.firmware.idle()
        self._idle = asyncio.get_running_loop().call_later(every, self._idle_wait, every)

    def _host_closed(self) -> None:
        self._connected = False
        self._out.clear()
        self._power_off()

    def _power_off(self) -> None:
        for timer in (self._booting, self._idle):
            if timer is not None:
                timer.cancel()
        self._booting = self._idle = None
        for timer in (self._rx_timer, self._tx_timer):
            if timer is not None:
                timer.cancel()
        self._reset_wire()
        self.firmware.stop()

    # ------------------------------------------------------------------ receiving, at the wire's pace

    def _received(self, data: bytes) -> None:
        if self.uart is None:
            self._rx_partial += data
            while (end := self._rx_partial.find(b"\n")) >= 0:
                raw = bytes(self._rx_partial[:end + 1])
                del self._rx_partial[:end + 1]
                self._line(raw)
            return
        self._arrivals.extend(self.uart.lines(asyncio.get_running_loop().time(), data))
        self._deliver()

    def _deliver(self) -> None:
        self._rx_timer = None
        loop = asyncio.get_running_loop()
        due = loop.time() + TIMER_SLACK_S
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] <= due:
            self._line(arrivals.popleft()[1])
        if arrivals and self._rx_timer is None:
            self._rx_timer = loop.call_at(arrivals[0][0], self._deliver)

    def _line(self, raw: bytes) -> None:
        self.stats.lines_received += 1
        self.firmware.received_line(self._corrupt(raw))

    def _corrupt(self, raw: bytes) -> bytes:
        """With probability ``noise``, one byte of the line (never its end) turns into another."""
        if self.noise <= 0 or self._rng.random() >= self.noise:
            return raw
        body = raw.rstrip(b"\r\n")
        if not body:
            return raw
        pos = self._rng.randrange(len(body))
        choices = [c for c in range(0x21, 0x7F) if c != body[pos]]
        self.stats.corrupted += 1
        return body[:pos] + bytes([self._rng.choice(choices)]) + body[pos + 1:] + raw[len(body):]

    # ------------------------------------------------------------------ sending, at the wire's pace

    def _send(self, lines: list[str]) -> None:
        if not self._connected or self._master < 0:
            return
        if self._lose_oks:
            lines = self._drop_oks(lines)
            if not lines:
                return
        data = ("\n".join(lines) + "\n").encode()
        if self.uart is None:
            self._write(data)
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        done = self.uart.send(now, len(data))
        if done <= now + TIMER_SLACK_S and not self._tx_queue:
            self._write(data)
            return
        self._tx_queue.append((done, data))
        if self._tx_timer is None:
            self._tx_timer = loop.call_at(done, self._transmit)

    def _drop_oks(self, lines: list[str]) -> list[str]:
        kept = []
        for line in lines:
            if self._lose_oks and line.startswith("ok"):
                self._lose_oks -= 1
                self.stats.oks_lost += 1
            else:
                kept.append(line)
        return kept

    def _transmit(self) -> None:
        self._tx_timer = None
        loop = asyncio.get_running_loop()
        due = loop.time() + TIMER_SLACK_S
        queue = self._tx_queue
        while queue and queue[0][0] <= due:
            self._write(queue.popleft()[1])
        if queue:
            self._tx_timer = loop.call_at(queue[0][0], self._transmit)

    def _write(self, data: bytes) -> None:
        self._out += data
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
