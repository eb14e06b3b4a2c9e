"""systemd's notify protocol as the shipped units use it (Type=notify, WatchdogSec=30), on a
real datagram socket as $NOTIFY_SOCKET: READY=1 once serving, WATCHDOG=1 every half of
WATCHDOG_USEC only for the watched process and only while it is healthy, STOPPING=1 on
SIGTERM. A bug here gets hub and agent killed by systemd every 30 s, or a hung hub kept."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from farmhand.service import database_problem, sd_notify, watchdog_interval_s

from .conftest import free_port

ROOT = Path(__file__).resolve().parent.parent

# A service whose loop and health check the test can upset by signal; it says when, on the same socket.
SERVICE = """
import asyncio, os, signal, sys, time
from farmhand.service import run_service, sd_notify

watched, block_s = sys.argv[1], float(sys.argv[2])
if watched == "self":
    os.environ["WATCHDOG_PID"] = str(os.getpid())
elif watched == "other":
    os.environ["WATCHDOG_PID"] = str(os.getppid())
hung = asyncio.Event()

def block_the_loop():
    sd_notify("STATUS=loop blocked")
    time.sleep(block_s)
    sd_notify("STATUS=loop free")

def toggle_health():
    if hung.is_set():
        hung.clear()
        sd_notify("STATUS=health answers")
    else:
        hung.set()
        sd_notify("STATUS=health hangs")

async def health(budget_s):
    if hung.is_set():
        await asyncio.Event().wait()
    return None

async def start():
    sd_notify("STATUS=starting")
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, block_the_loop)
    loop.add_signal_handler(signal.SIGUSR2, toggle_health)
    print("started", flush=True)

async def stop():
    print("stopped", flush=True)

asyncio.run(run_service(start, stop, health))
"""


class NotifySocket:
    """What systemd listens on: a datagram socket; each message is one datagram."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)

    def next(self, timeout: float = 15.0) -> tuple[float, str]:
        """(arrival time, message); fails the test when nothing comes within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            raise AssertionError(f"nothing on NOTIFY_SOCKET within {timeout} s") from None
        return time.monotonic(), data.decode()

    def drain(self) -> list[str]:
        self.sock.setblocking(False)
        got = []
        try:
            while True:
                got.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return got

    def until(self, wanted: str, timeout: float = 15.0) -> list[str]:
        """Every message up to and including ``wanted``."""
        got: list[str] = []
        while not got or got[-1] != wanted:
            got.append(self.next(timeout)[1])
        return got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    listener = NotifySocket(f"@farmhand-test-{uuid.uuid4().hex}")
    yield listener
    listener.close()


def test_each_state_is_one_datagram_to_a_path_or_an_abstract_socket(monkeypatch: pytest.MonkeyPatch,
                                                                     notify: NotifySocket) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False, "outside systemd there is nobody to tell"
    monkeypatch.setenv("NOTIFY_SOCKET", notify.address)
    assert sd_notify("READY=1") and sd_notify("WATCHDOG=1")
    assert [notify.next(5)[1], notify.next(5)[1]] == ["READY=1", "WATCHDOG=1"]
    with tempfile.TemporaryDirectory(dir="/tmp") as short:  # a socket path has at most 107 bytes
        on_disk = NotifySocket(f"{short}/notify")
        monkeypatch.setenv("NOTIFY_SOCKET", on_disk.address)
        try:
            assert sd_notify("STOPPING=1") and on_disk.next(5)[1] == "STOPPING=1"
        finally:
            on_disk.close()
        assert sd_notify("STOPPING=1") is False, "a socket nobody listens on is not an error"


@pytest.mark.parametrize(("usec", "pid", "interval"), [
    ("30000000", None, 15.0), ("30000000", "own", 15.0), ("30000000", "other", None), (None, None, None),
])
def test_the_watchdog_is_fed_at_half_of_watchdog_usec_by_the_watched_process_only(
        monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, interval: float | None) -> None:
    for name, value in (("WATCHDOG_USEC", usec),
                        ("WATCHDOG_PID", {"own": str(os.getpid()), "other": str(os.getppid())}.get(pid or ""))):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert watchdog_interval_s() == interval


def start_service(notify: NotifySocket, watched: str, usec: int, block_s: float = 0.0) -> subprocess.Popen[str]:
    env = {**os.environ, "NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": str(usec), "PYTHONPATH": str(ROOT)}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-c", SERVICE, watched, str(block_s)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "started\n"
    assert [notify.next()[1], notify.next()[1]] == ["STATUS=starting", "READY=1"], "ready once started, not before"
    return proc


def stop_service(proc: subprocess.Popen[str], notify: NotifySocket) -> list[str]:
    """SIGTERM, as systemctl stop sends; every message from then to STOPPING=1."""
    proc.send_signal(signal.SIGTERM)
    said = notify.until("STOPPING=1")
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0 and "stopped" in out.splitlines(), out
    return said


@pytest.mark.integration
def test_a_service_is_ready_feeds_the_watchdog_in_time_and_says_it_is_stopping(notify: NotifySocket) -> None:
    usec = 1_000_000  # WatchdogSec=1: systemd kills a process silent for a second
    proc = start_service(notify, "self", usec)
    try:
        pings = [notify.next() for _ in range(4)]
        assert [m for _, m in pings] == ["WATCHDOG=1"] * 4
        gaps = [b - a for (a, _), (b, _) in zip(pings, pings[1:], strict=False)]
        assert all(0.4 < gap < usec / 1e6 for gap in gaps), f"pings every half WatchdogSec, got gaps {gaps}"
    finally:
        said = stop_service(proc, notify)
    assert set(said[:-1]) <= {"WATCHDOG=1"}


@pytest.mark.integration
def test_a_process_that_is_not_the_watched_pid_does_not_feed_the_watchdog(notify: NotifySocket) -> None:
    proc = start_service(notify, "other", 200_000)
    time.sleep(1.0)  # five intervals in which a watched process would have pinged
    assert stop_service(proc, notify) == ["STOPPING=1"]


@pytest.mark.integration
def test_no_ping_while_the_loop_is_blocked_or_the_health_check_hangs(notify: NotifySocket) -> None:
    proc = start_service(notify, "self", 400_000, block_s=1.5)
    try:
        assert notify.next()[1] == "WATCHDOG=1"
        proc.send_signal(signal.SIGUSR1)
        said = notify.until("STATUS=loop free")
        assert said[said.index("STATUS=loop blocked"):] == ["STATUS=loop blocked", "STATUS=loop free"]
        assert notify.next()[1] == "WATCHDOG=1", "fed again once the loop answers"

        proc.send_signal(signal.SIGUSR2)
        notify.until("STATUS=health hangs")
        time.sleep(1.5)  # seven intervals
        proc.send_signal(signal.SIGUSR2)
        assert notify.until("STATUS=health answers") == ["STATUS=health answers"]
        assert notify.next()[1] == "WATCHDOG=1", "fed again once healthy"
    finally:
        stop_service(proc, notify)


def test_a_database_held_by_a_writer_is_found_unwritable(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    with sqlite3.connect(path, isolation_level=None) as holder:
        holder.execute("PRAGMA journal_mode=WAL")
        assert database_problem(path, 0.1) is None
        holder.execute("BEGIN IMMEDIATE")
        assert "locked" in (database_problem(path, 0.1) or "")
        holder.execute("ROLLBACK")
        assert database_problem(path, 0.1) is None


@pytest.mark.integration
def test_a_hub_whose_database_takes_no_writer_stops_feeding_the_watchdog(notify: NotifySocket,
                                                                        tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "hub.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[http]\nhost = "127.0.0.1"\nport = {port}\n'
                      "[mqtt]\nembedded_port = 0\n")
    env = {**os.environ, "NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "1000000", "PYTHONPATH": str(ROOT)}
    env.pop("WATCHDOG_PID", None)
    with open(tmp_path / "hub.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "farmhand.cli", "hub", "--config", str(config)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        assert notify.next(60)[1] == "READY=1"
        assert _healthz(port) == 200, "READY=1 comes once the hub serves"
        assert notify.next()[1] == "WATCHDOG=1"

        with sqlite3.connect(tmp_path / "data" / "hub.db", isolation_level=None) as holder:
            holder.execute("BEGIN IMMEDIATE")  # a writer that never finishes, as a hung transaction would be
            time.sleep(1.0)
            notify.drain()  # a ping whose check ran before the lock was taken
            time.sleep(2.0)  # two WatchdogSec: systemd would have restarted it
            assert "WATCHDOG=1" not in notify.drain(), (tmp_path / "hub.log").read_text()[-3000:]
            holder.execute("ROLLBACK")
        assert notify.next()[1] == "WATCHDOG=1", "fed again once the database takes a writer"
        assert "watchdog_not_fed" in (tmp_path / "hub.log").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        said = notify.until("STOPPING=1")
        proc.wait(30)
    assert set(said[:-1]) <= {"WATCHDOG=1"} and proc.returncode == 0


def _healthz(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
        return r.status


# A service that stops itself once started, saying what its garbage collector does then.
SETTLED = """
import asyncio, gc, os, signal
from farmhand.service import run_service

async def start():
    print("threshold", gc.get_threshold()[0], flush=True)
    asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGTERM)

async def stop():
    print("frozen", gc.get_freeze_count(), "threshold", gc.get_threshold()[0], flush=True)

asyncio.run(run_service(start, stop))
"""


def test_a_started_service_stops_scanning_what_it_loaded_and_collects_less_often() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NOTIFY_SOCKET", None)
    out = subprocess.run([sys.executable, "-c", SETTLED], env=env, capture_output=True, text=True, timeout=30,
                         check=True).stdout.splitlines()
    (_, before), (_, frozen, _, after) = [line.split() for line in out if line.startswith(("threshold", "frozen"))]
    assert int(frozen) > 1000, "the modules and state loaded at start are frozen"
    assert int(after) > int(before), "young objects are collected less often than by default"
