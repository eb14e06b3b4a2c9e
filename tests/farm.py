"""A small real farm for integration tests: hub, agents and virtual printers on a real broker."""

from __future__ import annotations

import asyncio
import subprocess
import re
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from agent.config import AgentConfig
from agent.node import Agent
from farmhand.sim.printer import VirtualPrinter
from hub.app import Hub
from hub.config import HubConfig

from .authkit import AGENT_TOKEN, auth_config, bearer


def hub_config(data_dir: Path, mqtt_url: str | None, **extra: Any) -> HubConfig:
    return HubConfig.model_validate({
        "hub_id": "test",
        "data_dir": data_dir,
        "http": {"host": "127.0.0.1", "port": 0},
        "mqtt": {"url": mqtt_url} if mqtt_url else {"embedded_port": 0},
        "auth": auth_config(),
        **extra,
    })


def agent_config(storage: Path, mqtt_url: str, devices: dict[str, Path], node_id: str | None = None,
                 metrics_interval_s: float = 5.0) -> AgentConfig:
    return AgentConfig.model_validate({
        "node_id": node_id or f"node-{uuid.uuid4().hex[:8]}",
        "mqtt": {"url": mqtt_url},
        "storage": {"dir": storage},
        "hub": {"token": AGENT_TOKEN},
        "telemetry_interval_s": 0.5,
        "metrics_interval_s": metrics_interval_s,
        "devices": [{"id": dev, "driver": "serial_gcode", "port": str(link), "baud": 250000}
                    for dev, link in devices.items()],
    })


async def start_printer(tmp: Path, name: str = "printer0", **kw: Any) -> VirtualPrinter:
    printer = VirtualPrinter(tmp / name, **kw)
    await printer.start()
    return printer


class Api:
    """The hub's HTTP API as a script would use it."""

    def __init__(self, base: str, tls: ssl.SSLContext | None = None) -> None:
        """``tls``: how an https hub's certificate is checked (the farm CA)."""
        self.base = base
        self.http = aiohttp.ClientSession(headers=bearer("admin"), connector=aiohttp.TCPConnector(ssl=tls or True))

    async def close(self) -> None:
        await self.http.close()

    async def upload(self, gcode: str, name: str = "part.gcode") -> str:
        async with self.http.post(f"{self.base}/api/v1/files", params={"name": name}, data=gcode.encode(),
                                  headers={"Content-Type": "application/octet-stream"}) as r:
            assert r.status in (200, 201), await r.text()
            return (await r.json())["sha256"]

    async def submit(self, sha: str, **fields: Any) -> dict[str, Any]:
        async with self.http.post(f"{self.base}/api/v1/jobs", json={"file_sha256": sha, **fields}) as r:
            assert r.status == 201, await r.text()
            return await r.json()

    async def job(self, job_id: Any) -> dict[str, Any]:
        async with self.http.get(f"{self.base}/api/v1/jobs/{job_id}") as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def wait_job(self, job_id: Any, states: set[str], timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job["state"] in states:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} stuck in {job['state']}: {job}")
            await asyncio.sleep(0.1)


async def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class OnePrinterFarm:
    """A hub, one agent and one virtual printer; `async with` starts and stops them all."""

    def __init__(self, tmp: Path, mqtt_url: str, *, speed_factor: float, agent_mqtt_url: str | None = None,
                 node_id: str | None = None) -> None:
        """``agent_mqtt_url`` and ``node_id``: the agent's own login, where the broker tells its clients apart."""
        self.tmp, self.mqtt_url, self.speed_factor = tmp, mqtt_url, speed_factor
        self.agent_mqtt_url, self.node_id = agent_mqtt_url or mqtt_url, node_id
        self.agent_config: AgentConfig | None = None

    async def __aenter__(self) -> OnePrinterFarm:
        self.printer = await start_printer(self.tmp, speed_factor=self.speed_factor)
        await self._start_hub()
        self.agent_config = agent_config(self.tmp / "agent", self.agent_mqtt_url, {"mk3s-1": self.printer.link},
                                         node_id=self.node_id)
        self.agent = Agent(self.agent_config)
        await self.agent.start()
        return self

    async def _start_hub(self) -> None:
        self.hub = Hub(hub_config(self.tmp / "hub", self.mqtt_url))
        await self.hub.start()
        self.api = Api(self.hub.http_url)

    async def _stop_hub(self) -> None:
        await self.api.close()
        await self.hub.stop()

    async def restart_hub(self, pause_s: float = 1.0) -> None:
        await self._stop_hub()
        await asyncio.sleep(pause_s)
        await self._start_hub()

    async def __aexit__(self, *exc: object) -> None:
        await self._stop_hub()
        await self.agent.stop()
        await self.printer.stop()


def demo_api_hint(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """The token and URL of the API call a running ``farmhand demo`` prints once its hub answers."""
    assert proc.stdout is not None
    for line in proc.stdout:
        hint = re.search(r"try: curl -H 'Authorization: Bearer (\S+)' (\S+)", line)
        if hint:
            return hint.group(1), hint.group(2)
    raise AssertionError("the demo ended before it printed an API call to try")
