"""Running a Farmhand process as a service: signals, sd_notify readiness and watchdog.

systemd's notify protocol is one datagram to $NOTIFY_SOCKET; it is simple enough
that a dependency would cost more than these lines.

The shipped units say ``Type=notify`` and ``WatchdogSec=30``: systemd restarts a
process that has not sent ``WATCHDOG=1`` for 30 s. So the watchdog is fed only
while the process is healthy: the ping is sent from the event loop itself (a
loop that hangs sends nothing), and only after the process's health check
answered within its time and found nothing wrong (for the hub: its database
takes a writer). A hub that hangs is restarted instead of serving nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path

import structlog

log = structlog.get_logger("farmhand.service")

# Given the seconds it may take, returns None when healthy, else what is wrong.
HealthCheck = Callable[[float], Awaitable[str | None]]


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


async def loop_answers(budget_s: float) -> str | None:
    """The check every process gets: reaching it at all means its event loop runs."""
    return None


def database_problem(path: Path, timeout_s: float) -> str | None:
    """None when a writer could start a transaction on the SQLite file at ``path`` within ``timeout_s``.

    Its own connection, so it can run on a worker thread: a transaction the process
    left open, or a database that cannot be written, keeps the write lock from it.
    """
    try:
        with closing(sqlite3.connect(path, timeout=timeout_s, isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
    except sqlite3.Error as exc:
        return f"database {path} takes no writer: {exc}"
    return None


async def _health_problem(health: HealthCheck, budget_s: float) -> str | None:
    try:
        async with asyncio.timeout(budget_s):
            return await health(budget_s)
    except TimeoutError:
        return f"the health check did not answer within {budget_s:g} s"
    except Exception as exc:  # a check that breaks is a finding, not a reason to stop feeding forever
        return f"the health check failed: {exc!r}"


async def feed_watchdog(interval_s: float, health: HealthCheck) -> None:
    """Every ``interval_s``, ``WATCHDOG=1`` if ``health`` finds nothing wrong within half of it.

    Half, so a ping is never more than 1.5 intervals (three quarters of WatchdogSec) after the last.
    """
    sick = False
    while True:
        await asyncio.sleep(interval_s)
        problem = await _health_problem(health, interval_s / 2)
        if problem is None:
            sd_notify("WATCHDOG=1")
            if sick:
                log.info("watchdog_fed_again")
            sick = False
        else:
            log.error("watchdog_not_fed", problem=problem)
            sick = True


def settle_memory() -> None:
    """Once started: what the process loaded to run (modules, config, state read from disk) stays for its life,
    so the garbage collector stops scanning it (``gc.freeze``), and it looks for cycles less often.

    At 5,000 printers a burst of one reading each allocated enough for ~130 collections, one of them a full one
    that paused the hub ~100 ms, a third of the burst's time (bench.panel_load); the hub's data holds few cycles.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


async def run_service(
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    health: HealthCheck = loop_answers,
) -> None:
    """Start, tell systemd we are ready, feed the watchdog while healthy, stop on SIGINT/SIGTERM."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await start()
    settle_memory()
    sd_notify("READY=1")
    interval = watchdog_interval_s()
    watchdog = asyncio.create_task(feed_watchdog(interval, health), name="watchdog") if interval else None
    try:
        await stopping.wait()
    finally:
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        sd_notify("STOPPING=1")
        log.info("stopping")
        await stop()
