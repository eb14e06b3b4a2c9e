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
This module is the pty and the wire; ``firmware`` is what the board does.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import random
import tty
from pathlib import Path

import structlog

from .firmware import PrinterStats, VirtualFirmware

__all__ = ["PrinterStats", "VirtualPrinter", "add_arguments", "run_from_args"]

log = structlog.get_logger("farmhand.sim")

# A board reset by the port opening boots for a moment; what the host sends meanwhile is lost.
BOOT_S = 0.05
# How often to look for a host while none holds the port (a closed pty slave cannot be waited on).
HOST_POLL_S = 0.02


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
        self._reader: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._booting: asyncio.TimerHandle | None = None
        self._connected = False
        self._rx = bytearray()
        self._out = bytearray()
        self._writing = False
        self.firmware = self._new_firmware()

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
        log.info("virtual printer serving", link=str(self.link), tty=self._tty, speed=self.speed_factor,
                 noise=self.noise)

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

    def inject_kill(self, message: str = "Printer halted. kill() called!") -> None:
        """Make the firmware stop as Marlin's kill() does: print ``Error:<message>`` and answer nothing more."""
        self.firmware.kill(message)

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

    # ------------------------------------------------------------------ the host's side of the pty

    def _new_firmware(self) -> VirtualFirmware:
        return VirtualFirmware(send=self._send, executed=self.executed, stats=self.stats,
                               speed_factor=self.speed_factor, rx_buffer=self.rx_buffer, bufsize=self.bufsize,
                               advanced_ok=self.advanced_ok, name=self.name, link=str(self.link))

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
        self._power_off()
        self._rx.clear()
        self.firmware = self._new_firmware()
        self._connected = True
        self._booting = asyncio.get_running_loop().call_later(BOOT_S, self._booted)

    def _booted(self) -> None:
        self._booting = None
        self._worker = asyncio.create_task(self.firmware.run(), name=f"sim-firmware {self.link}")
        self._send(self.firmware.banner())

    def _host_closed(self) -> None:
        self._connected = False
        self._out.clear()
        self._power_off()

    def _power_off(self) -> None:
        if self._booting is not None:
            self._booting.cancel()
            self._booting = None
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        self.firmware.stop()

    def _received(self, data: bytes) -> None:
        self.firmware.received_bytes(len(data))
        self._rx += data
        while (end := self._rx.find(b"\n")) >= 0:
            raw = bytes(self._rx[:end + 1])
            del self._rx[:end + 1]
            self.stats.lines_received += 1
            self.firmware.received_line(self._corrupt(raw))

    def _corrupt(self, raw: bytes) -> bytes:
        """With probability ``noise``, one byte of the line (never its end) turns into another."""
        body = raw.rstrip(b"\r\n")
        if not body or self.noise <= 0 or self._rng.random() >= self.noise:
            return raw
        pos = self._rng.randrange(len(body))
        choices = [c for c in range(0x21, 0x7F) if c != body[pos]]
        self.stats.corrupted += 1
        return body[:pos] + bytes([self._rng.choice(choices)]) + body[pos + 1:] + raw[len(body):]

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

    try:
        printer = VirtualPrinter(args.link, speed_factor=args.speed, noise=args.noise, seed=args.seed,
                                 rx_buffer=args.rx_buffer, bufsize=args.bufsize, advanced_ok=args.advanced_ok,
                                 name=args.name)
    except ValueError as exc:
        raise SystemExit(f"farmhand sim printer: {exc}") from None

    async def start() -> None:
        await printer.start()
        print(f"farmhand sim printer: serving on {printer.link} (-> {printer.tty}); Ctrl-C stops", flush=True)

    await run_service(start, printer.stop)
    return 0
