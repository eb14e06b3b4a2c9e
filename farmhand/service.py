"""Running a Farmhand process as a service: signals, sd_notify readiness and watchdog.

systemd's notify protocol is one datagram to $NOTIFY_SOCKET; it is simple enough
that a dependency would cost more than these lines.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("farmhand.service")


def sd_notify(state: str) -> bool:
    """Send one state line (``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``); False outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of systemd's WatchdogSec, when this process is the one being watched."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6


async def run_service(
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    healthy: Callable[[], bool] = lambda: True,
) -> None:
    """Start, tell systemd we are ready, feed the watchdog while healthy, stop on SIGINT/SIGTERM."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await start()
    sd_notify("READY=1")
    interval = watchdog_interval_s()
    try:
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), interval or 3600)
            except TimeoutError:
                # A hung event loop never gets here, so systemd restarts it.
                if healthy():
                    sd_notify("WATCHDOG=1")
    finally:
        sd_notify("STOPPING=1")
        log.info("stopping")
        await stop()
