"""A serial port for the agent: pyserial opens and configures it; a thread of its own (or the loop) reads it.

The streaming path runs once per ``ok``, hundreds of times a second per
printer, so the path from the kernel to the engine is kept short. On an
``AgentLoop`` (see ``agent.loop``) a thread per port waits on the port and
calls ``on_data`` with what one ``os.read`` returned, holding the loop's
``serial_lock``: no loop wake-up, no callback machinery. On any other loop the
loop reads the port itself and calls ``on_data`` from its reader callback.

A write goes to the descriptor at once, buffered only when the kernel's queue
is full (the loop then finishes it).

``hold_reading(until)`` lets the driver sleep through answers it does not need
yet: measured, a wake-up costs several times more CPU than the work done for one
``ok``, so reading ten answers at once is far cheaper than ten times one. The
kernel keeps what arrives meanwhile.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import select
import threading
import time
from collections.abc import Callable

import serial
import structlog

READ_CHUNK = 65536
# Linux's TIOCGSERIAL fills a struct serial_struct whose first int is the UART's type; PORT_UNKNOWN is 0.
_TIOCGSERIAL = 0x541E
_SERIAL_STRUCT_BYTES = 128

log = structlog.get_logger("farmhand.agent.serial")


class SerialLink:
    def __init__(self, port: str, baud: int, on_data: Callable[[bytes], None],
                 on_lost: Callable[[str], None]) -> None:
        self.port = port
        self.baud = baud
        self._on_data = on_data
        self._on_lost = on_lost
        self._serial: serial.Serial | None = None
        self._fd = -1
        self._out = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held: asyncio.TimerHandle | None = None
        self._held_until = 0.0
        self._thread: threading.Thread | None = None
        self._wake_w = -1
        self._writer_pending = False
        self._lost_reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self._fd >= 0

    @property
    def threaded(self) -> bool:
        """Whether ``on_data`` runs on the port's own thread (with the loop's lock held)."""
        return self._thread is not None

    def has_uart(self) -> bool:
        """Whether the port's driver reports a UART: bytes then take the wire's time (``baud``) to cross.

        A pseudo-terminal (Klipper's /tmp/printer, a simulator) has no serial driver at
        all; a USB CDC-ACM port reports no UART type. A native-USB board (Prusa's Buddy,
        most 32-bit boards) moves bytes as fast as the reader takes them, whatever the
        baud rate says, and pacing it to the baud rate would idle it; a CDC bridge chip
        in front of a real UART (an Einsy's 16U2) read unpaced only costs more wake-ups.
        USB-serial converters (FTDI, CH340, CP210x) and on-board UARTs report their type.
        """
        if self._fd < 0:
            return False
        try:
            info = fcntl.ioctl(self._fd, _TIOCGSERIAL, bytes(_SERIAL_STRUCT_BYTES))
        except OSError:
            return False
        return int.from_bytes(info[:4], "little", signed=True) != 0

    def open(self) -> None:
        """Open and configure the port, then watch it; raises OSError or serial.SerialException."""
        port = serial.Serial(self.port, self.baud, timeout=0, write_timeout=0)
        self._serial = port
        self._fd = port.fileno()
        os.set_blocking(self._fd, False)
        self._loop = asyncio.get_running_loop()
        lock: threading.Lock | None = getattr(self._loop, "serial_lock", None)
        if lock is None:
            self._loop.add_reader(self._fd, self._readable)
            return
        wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._read_thread, args=(lock, self._fd, wake_r),
                                        name=f"serial {self.port}", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        if self._fd < 0 or not data:
            return
        if self._out:
            self._out += data
            return
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self._lost(f"write failed: {exc.strerror or exc}")
            return
        if written < len(data):
            self._out += data[written:]
            self._watch_writable()

    def hold_reading(self, until: float) -> None:
        """Read nothing before ``until`` (``time.monotonic()``); then read all that came, and watch again."""
        if self._fd < 0 or self._loop is None:
            return
        if self._thread is not None:
            self._held_until = until
            return
        if self._held is not None:
            return
        self._loop.remove_reader(self._fd)
        self._held = self._loop.call_later(until - time.monotonic(), self._release)

    def close(self) -> None:
        if self._held is not None:
            self._held.cancel()
            self._held = None
        if self._fd >= 0 and self._loop is not None:
            if self._thread is None:
                self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._fd = -1
        self._out.clear()
        if self._thread is not None:
            # The thread waits on this pipe too: it wakes, finds the port closed and ends (closing the pipe).
            self._thread = None
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
            os.close(self._wake_w)
            self._wake_w = -1
        if self._serial is not None:
            try:
                self._serial.close()
            except (OSError, serial.SerialException):
                pass
            self._serial = None

    # ------------------------------------------------------------------ reading on the port's thread

    def _read_thread(self, lock: threading.Lock, fd: int, wake_r: int) -> None:
        """Wait on the port; read and hand on what came with the loop's lock held, so the loop is asleep.

        ``close`` runs with the lock held too, so once this thread holds it the port
        is either still open (the same descriptor) or closed for good.
        """
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        try:
            while True:
                held = self._held_until - time.monotonic()
                if held > 0:
                    time.sleep(held)
                poller.poll()
                with lock:
                    if self._fd != fd:
                        return
                    self._readable()
                    if self._lost_reason is not None:
                        # The loop closes the port when it learns of the loss; nothing more to read.
                        assert self._loop is not None
                        self._loop.call_soon_threadsafe(self._lost, self._lost_reason)
                        return
        except Exception:
            log.exception("the serial thread stopped", port=self.port)
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._lost, "the serial thread stopped")
        finally:
            os.close(wake_r)

    # ------------------------------------------------------------------ reading on the loop

    def _release(self) -> None:
        self._held = None
        if self._fd < 0 or self._loop is None:
            return
        self._loop.add_reader(self._fd, self._readable)
        self._readable(polled=False)

    def _readable(self, polled: bool = True) -> None:
        try:
            data = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(exc.strerror or str(exc))
            return
        if not data:
            # A tty in raw mode reads 0 bytes when it has none; after a poll said readable, it is gone.
            if polled:
                self._lost("the port closed")
            return
        self._on_data(data)

    # ------------------------------------------------------------------ writing the rest

    def _watch_writable(self) -> None:
        loop = self._loop
        if loop is None or self._writer_pending:
            return
        self._writer_pending = True
        if self._thread is not None and threading.current_thread() is self._thread:
            loop.call_soon_threadsafe(self._add_writer)
        else:
            self._add_writer()

    def _add_writer(self) -> None:
        if self._fd >= 0 and self._loop is not None and self._out:
            self._loop.add_writer(self._fd, self._writable)
        else:
            self._writer_pending = False

    def _writable(self) -> None:
        try:
            written = os.write(self._fd, self._out)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(f"write failed: {exc.strerror or exc}")
            return
        del self._out[:written]
        if not self._out and self._loop is not None:
            self._loop.remove_writer(self._fd)
            self._writer_pending = False

    def _lost(self, reason: str) -> None:
        if self._fd < 0:
            return
        if self._thread is not None and threading.current_thread() is self._thread:
            # The loop's own callbacks (the connection's lost future) are the loop's to run: the thread
            # ends and asks the loop to.
            self._lost_reason = reason
            return
        self.close()
        self._on_lost(reason)
