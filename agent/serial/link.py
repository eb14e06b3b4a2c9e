"""A serial port on the event loop: pyserial opens and configures it, the loop reads and writes its descriptor.

The streaming loop runs once per ``ok``, hundreds of times a second per
printer, so the path from the kernel to the engine is kept short: the loop
calls ``on_data`` straight from the readable callback with what one
``os.read`` returned (no stream reader, no task switch), and a write goes to
the descriptor at once, buffered only when the kernel's queue is full.

``hold_reading(until)`` lets the driver sleep through answers it does not need
yet: measured, a wake-up of a Python process costs several times more CPU than
the work it does for one ``ok``, so reading ten answers at once is far cheaper
than ten times one. The kernel keeps what arrives meanwhile.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import serial

READ_CHUNK = 65536


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

    @property
    def is_open(self) -> bool:
        return self._fd >= 0

    def open(self) -> None:
        """Open and configure the port, then watch it; raises OSError or serial.SerialException."""
        port = serial.Serial(self.port, self.baud, timeout=0, write_timeout=0)
        self._serial = port
        self._fd = port.fileno()
        os.set_blocking(self._fd, False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._readable)

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
            assert self._loop is not None
            self._loop.add_writer(self._fd, self._writable)

    def hold_reading(self, until: float) -> None:
        """Read nothing before ``until`` (the loop's clock); then read all that came, and watch again."""
        if self._fd < 0 or self._held is not None or self._loop is None:
            return
        self._loop.remove_reader(self._fd)
        self._held = self._loop.call_at(until, self._release)

    def _release(self) -> None:
        self._held = None
        if self._fd < 0 or self._loop is None:
            return
        self._loop.add_reader(self._fd, self._readable)
        self._readable(polled=False)

    def close(self) -> None:
        if self._held is not None:
            self._held.cancel()
            self._held = None
        if self._fd >= 0 and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._fd = -1
        self._out.clear()
        if self._serial is not None:
            try:
                self._serial.close()
            except (OSError, serial.SerialException):
                pass
            self._serial = None

    def _readable(self, polled: bool = True) -> None:
        try:
            data = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(exc.strerror or str(exc))
            return
        if not data:
            # A tty in raw mode reads 0 bytes when it has none; after the loop said readable, it is gone.
            if polled:
                self._lost("the port closed")
            return
        self._on_data(data)

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

    def _lost(self, reason: str) -> None:
        if self._fd < 0:
            return
        self.close()
        self._on_lost(reason)
