"""The agent's event loop: asyncio's own, which lets serial threads run while it waits.

A printer streaming a job answers hundreds of lines a second, and on small or
virtualised CPUs the loop's share of each answer (waking in ``epoll``, running
its callback, re-arming the descriptor after a hold) costs more than the
protocol work itself. So each serial port gets a thread that blocks on the
port and does the streaming's hot path itself: plain ``ok`` in, next lines out.

The thread must never run alongside the loop's own code, which owns the same
objects (the engine, the device, the port). ``AgentLoop`` makes that simple:
its thread holds ``serial_lock`` at all times except while it sleeps waiting
for events, and a serial thread takes the lock to run. Whatever a serial
thread does is thus done as if it were one more loop callback, and nothing on
the loop side needs a lock of its own. A serial thread still hands anything
that involves the loop (events, tasks, futures) back to it with
``call_soon_threadsafe``.

On any other loop the serial port is read by the loop itself, as a plain
reader callback: slower, and otherwise the same.

The loop also sizes what every TLS connection reads into (``TLS_READ_SIZE``):
asyncio gives each one a 256 KiB buffer of its own, zero-filled and so
resident, and an agent holds a TLS link per Bambu printer.
"""

from __future__ import annotations

import asyncio
import selectors
import threading
from asyncio import sslproto
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

TLS_READ_SIZE = 32 * 1024
"""Bytes a TLS connection reads at a time (asyncio's own is 256 KiB): two full TLS records. 50 Bambu printers
held 13 MB in asyncio's buffers; a bulk transfer over loopback took a few per cent more CPU at this size (16 KiB,
which splits records: a fifth more)."""


class _SharingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The loop's selector: lets go of the lock for just as long as it waits for events."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__()
        self._lock = lock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self._lock.release()
        try:
            return super().select(timeout)
        finally:
            self._lock.acquire()


class AgentLoop(asyncio.SelectorEventLoop):
    """A selector loop whose thread holds ``serial_lock`` except while it waits for events."""

    def __init__(self) -> None:
        self.serial_lock = threading.Lock()
        # Taken by the thread that makes the loop: the thread that runs it.
        self.serial_lock.acquire()
        super().__init__(_SharingSelector(self.serial_lock))
        # A class attribute in every Python from 3.11 on, read when a TLS connection is made and on each read; the
        # transports that make it differ between versions, so it is set here rather than by a transport of ours.
        sslproto.SSLProtocol.max_size = min(sslproto.SSLProtocol.max_size, TLS_READ_SIZE)

    def close(self) -> None:
        super().close()
        if self.serial_lock.locked():
            # A serial thread still waiting finds its port closed and ends.
            self.serial_lock.release()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on an ``AgentLoop``."""
    with asyncio.Runner(loop_factory=AgentLoop) as runner:
        return runner.run(main)
