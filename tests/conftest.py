"""Shared fixtures: real brokers, never mocks."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.loop import AgentLoop

# Skips for a missing program or package: listed at the end of the run, failed under CI=true.
from .prerequisites import (  # noqa: F401 - pytest finds the hooks by name here
    program,
    pytest_make_collect_report,
    pytest_runtest_makereport,
    pytest_terminal_summary,
)

def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Tests run on the agent's own loop, which reads serial ports on their threads as in production.

    Tests marked ``any_loop`` run on plain asyncio as well, where the loop reads the ports itself.
    """
    if item.get_closest_marker("any_loop"):
        return {"agent_loop": AgentLoop, "asyncio_loop": asyncio.SelectorEventLoop}
    return {"agent_loop": AgentLoop}


BROKERS = ("amqtt", "mosquitto")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``both_brokers`` that uses ``isolated_farm`` runs on the hub's embedded broker and on Mosquitto."""
    if metafunc.definition.get_closest_marker("both_brokers") and "farm_broker" in metafunc.fixturenames:
        metafunc.parametrize("farm_broker", BROKERS)


@pytest.fixture
def farm_broker() -> str:
    """The broker of ``hubkit.isolated_farm``: the hub's embedded one, unless ``both_brokers`` parametrises it."""
    return BROKERS[0]


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str:
    return program("mosquitto")


class PrivateMosquitto:
    """A Mosquitto this test owns: it can be stopped and started again on the same port."""

    def __init__(self, workdir: Path, access: str = "allow_anonymous true\n", *,
                 max_queued_messages: int = 100_000, max_inflight_messages: int = 1000) -> None:
        """``access``: the lines that say who may connect (and with an ACL, to what); ``max_queued_messages``:
        what the broker holds for a client before it drops (a small one overflows the hub's queue)."""
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n{access}"
            f"persistence true\npersistence_location {workdir}/\nmax_queued_messages {max_queued_messages}\n"
            f"max_inflight_messages {max_inflight_messages}\n"
            # As root Mosquitto drops to its own user, which cannot write into pytest's 0700
            # folders: a restart would then lose the persistent sessions this broker is for.
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.workdir / "mosquitto.log", "ab") as log:
            self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)],
                                         stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 10
        while not _listening("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto did not start: {(self.workdir / 'mosquitto.log').read_text()}")
            time.sleep(0.05)

    def reload(self) -> None:
        """SIGHUP: Mosquitto reads its password and ACL files again, as `systemctl reload` does."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistence file, as a service restart would."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="session")
def mosquitto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Mosquitto of this test process's own (one per xdist worker), shared by its tests.

    Not the machine's 127.0.0.1:1883: other sessions' hubs and agents use that one, and so would the other
    workers of this run; a hub there once assigned a test's queued job to a stranger's printer."""
    broker = PrivateMosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker.url
    finally:
        broker.stop()


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    broker = PrivateMosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
