"""A farm of real processes for chaos tests: the hub and the agent run as `farmhand hub|agent`,
so a test can kill either with SIGKILL, as a power cut or the OOM killer would.

The broker is a private Mosquitto and the printer a virtual one in the test's
own process, so the test can read what the printer executed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from farmhand.sim.printer import VirtualPrinter

from .authkit import AGENT_TOKEN, TOKENS
from .conftest import PrivateMosquitto, free_port
from .farm import Api


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_toml(path: Path, top: dict[str, Any], sections: dict[str, dict[str, Any]],
               tables: dict[str, list[dict[str, Any]]] | None = None) -> Path:
    lines = [f"{k} = {_toml(v)}" for k, v in top.items()]
    for name, section in sections.items():
        lines += [f"[{name}]", *(f"{k} = {_toml(v)}" for k, v in section.items())]
    for name, rows in (tables or {}).items():
        for row in rows:
            lines += [f"[[{name}]]", *(f"{k} = {_toml(v)}" for k, v in row.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


class Process:
    """One `farmhand` subprocess, its output kept in a log file beside its config."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name, self.args, self.log = name, args, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "farmhand.cli", *self.args], stdout=out, stderr=out,
                                         env={**os.environ, "FARMHAND_LOG_JSON": "1"})

    def kill(self) -> None:
        """SIGKILL: no clean-up, no goodbye; the broker publishes the Last Will."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


class ProcessFarm:
    """A hub and one agent as processes, a virtual printer in this process, a private broker."""

    def __init__(self, tmp: Path, broker: PrivateMosquitto, *, speed_factor: float,
                 jobs: dict[str, Any] | None = None) -> None:
        self.tmp, self.broker = tmp, broker
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.node_id = f"chaos-{uuid.uuid4().hex[:6]}"
        self.printer = VirtualPrinter(tmp / "printer0", speed_factor=speed_factor)
        hub_toml = write_toml(tmp / "hub.toml", {"hub_id": "chaos", "data_dir": str(tmp / "hub")}, {
            "http": {"host": "127.0.0.1", "port": self.port},
            "mqtt": {"url": broker.url},
            "auth": {"admin_password": "chaos-admin-password",
                     "bootstrap_tokens": [{"name": f"t-{r}", "role": r, "token": t} for r, t in TOKENS.items()]},
            "jobs": jobs or {},
        })
        agent_toml = write_toml(tmp / "agent.toml", {"node_id": self.node_id, "telemetry_interval_s": 0.5}, {
            "mqtt": {"url": broker.url},
            "hub": {"token": AGENT_TOKEN},
            "storage": {"dir": str(tmp / "agent")},
        }, {"devices": [{"id": "mk3s-1", "driver": "serial_gcode", "port": str(tmp / "printer0"), "baud": 250000}]})
        self.hub = Process("hub", ["hub", "--config", str(hub_toml)], tmp / "hub.log")
        self.agent = Process("agent", ["agent", "--config", str(agent_toml)], tmp / "agent.log")
        self.api: Api | None = None

    async def __aenter__(self) -> ProcessFarm:
        await self.printer.start()
        await self.start_hub()
        self.agent.start()
        await self.wait_device_state("idle")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.api is not None:
            await self.api.close()
        self.agent.stop()
        self.hub.stop()
        await self.printer.stop()

    async def start_hub(self) -> None:
        self.hub.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                async with aiohttp.ClientSession() as http, http.get(f"{self.base}/healthz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the hub did not start: {self.hub.log.read_text()[-3000:]}")
            await asyncio.sleep(0.1)
        if self.api is None:
            self.api = Api(self.base)

    async def device(self) -> dict[str, Any] | None:
        assert self.api is not None
        async with self.api.http.get(f"{self.base}/api/v1/devices") as r:
            items = (await r.json())["items"]
        return next((d for d in items if d["node"] == self.node_id), None)

    async def wait_device_state(self, state: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            device = await self.device()
            if device is not None and device["state"] == state and device.get("online", True):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"device never {state}: {device}")
            await asyncio.sleep(0.1)

    async def until(self, check: Any, what: str, timeout: float = 60.0) -> Any:
        """Poll ``await check()`` until truthy; returns it and how long it took."""
        started = time.monotonic()
        while True:
            found = await check()
            if found:
                return found, time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.05)
