"""A render farm on this machine for tests and the benchmark: a hub and agents whose Blender devices are real.

Each agent is a real ``Agent`` with one ``blender`` device, on a real broker,
downloading the .blend from the hub and uploading frames to it.
"""

from __future__ import annotations

import asyncio
import stat
import time
import uuid
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.node import Agent
from hub.app import Hub

from .authkit import AGENT_TOKEN
from .hubkit import Http, forget_session, hub_config

# Answers Blender's capability probe like Blender, then fails every render: a node whose GPU driver is broken.
BROKEN_BLENDER = """#!/bin/sh
for arg in "$@"; do
  if [ "$arg" = "-o" ]; then echo "Error: CUDA error: an illegal memory access was encountered" >&2; exit 1; fi
done
exec {blender} "$@"
"""


def broken_blender(folder: Path, real: str = "blender") -> Path:
    path = folder / "broken-blender"
    path.write_text(BROKEN_BLENDER.format(blender=real))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def render_agent_config(storage: Path, mqtt_url: str, blender: str, node_id: str) -> AgentConfig:
    return AgentConfig.model_validate({
        "node_id": node_id,
        "mqtt": {"url": mqtt_url},
        "storage": {"dir": storage},
        "hub": {"token": AGENT_TOKEN},
        "telemetry_interval_s": 1.0,
        "metrics_interval_s": 30.0,
        "devices": [{"id": "r1", "driver": "blender", "blender": blender}],
    })


class RenderRig:
    """`async with RenderRig(...)`: a hub, then one agent per entry of ``blenders``, all online and idle."""

    def __init__(self, tmp: Path, mqtt_url: str, blenders: list[str], **hub_extra: Any) -> None:
        self.tmp, self.mqtt_url, self.blenders, self.hub_extra = tmp, mqtt_url, blenders, hub_extra
        self.agents: list[Agent] = []
        self.node_ids = [f"render-{n}-{uuid.uuid4().hex[:6]}" for n in range(len(blenders))]

    async def __aenter__(self) -> RenderRig:
        self.hub = Hub(hub_config(self.tmp / "hub", self.mqtt_url, **self.hub_extra))
        await self.hub.start()
        self.http = Http(self.hub.http_url)
        for node_id, blender in zip(self.node_ids, self.blenders, strict=True):
            agent = Agent(render_agent_config(self.tmp / node_id, self.mqtt_url, blender, node_id))
            self.agents.append(agent)
        await asyncio.gather(*(a.start() for a in self.agents))
        await self.wait_idle()
        return self

    async def wait_idle(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            devices = await self.http.devices()
            if all(devices.get(f"{n}/r1", {}).get("state") == "idle" and devices[f"{n}/r1"]["online"]
                   for n in self.node_ids):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"render nodes not idle: {devices}")
            await asyncio.sleep(0.1)

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()
        await asyncio.gather(*(a.stop() for a in self.agents), return_exceptions=True)
        url, client_id = self.hub.mqtt_url, f"farmhand-hub-{self.hub.config.hub_id}"
        await self.hub.stop()
        await forget_session(url, client_id)

    async def upload_blend(self, path: Path) -> str:
        return await self.http.upload(path.read_bytes(), name=path.name)

    async def submit(self, **fields: Any) -> dict[str, Any]:
        status, body = await self.http.call("POST", "/api/v1/render-jobs", json=fields)
        assert status == 201, body
        return body

    async def job(self, job_id: int) -> dict[str, Any]:
        status, body = await self.http.call("GET", f"/api/v1/render-jobs/{job_id}")
        assert status == 200, body
        return body

    async def wait_job(self, job_id: int, states: set[str], timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job["state"] in states:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"render job {job_id} stuck in {job['state']}: {job}")
            await asyncio.sleep(0.1)
