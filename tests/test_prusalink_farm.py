"""A PrusaLink printer in a real farm: hub, agent and a simulated PrusaLink printer on a private Mosquitto.

The hub submits, pauses, resumes, cancels and stops through its HTTP API as an
operator would; the agent drives the PrusaLink simulator over its v1 HTTP API;
the job's events are read back from the hub's own database.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig
from agent.node import Agent
from farmhand.sim.prusalink import PrusaLinkSim
from farmhand.sim.prusalink_printer import SimPrinter
from hub.app import Hub

from .authkit import AGENT_TOKEN
from .farm import Api, hub_config, wait_for

pytestmark = pytest.mark.integration

GCODE = "G28\n" + "G1 X10 Y10 E0.5\nG1 X20 Y10 E0.5\n" * 500


class PrusaLinkFarm:
    """A hub, one agent and one simulated PrusaLink printer; `async with` starts and stops them all."""

    def __init__(self, tmp: Path, mqtt_url: str, printer: SimPrinter) -> None:
        self.tmp, self.mqtt_url, self.printer = tmp, mqtt_url, printer
        self.node_id = f"node-{uuid.uuid4().hex[:8]}"

    async def __aenter__(self) -> PrusaLinkFarm:
        self.sim = PrusaLinkSim()
        url = await self.sim.add(self.printer)
        self.hub = Hub(hub_config(self.tmp / "hub", self.mqtt_url))
        await self.hub.start()
        self.api = Api(self.hub.http_url)
        self.agent = Agent(AgentConfig.model_validate({
            "node_id": self.node_id, "mqtt": {"url": self.mqtt_url}, "storage": {"dir": self.tmp / "agent"},
            "hub": {"token": AGENT_TOKEN}, "telemetry_interval_s": 0.2, "metrics_interval_s": 5.0,
            "devices": [{"id": "mk4-1", "driver": "prusalink", "url": url, "username": self.printer.username,
                         "password": self.printer.password, "model": "MK4"}],
        }))
        await self.agent.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.api.close()
        await self.hub.stop()
        await self.agent.stop()
        await self.sim.close()

    async def post(self, path: str) -> dict[str, Any]:
        async with self.api.http.post(f"{self.api.base}{path}") as r:
            assert r.status in (200, 202), await r.text()
            return await r.json()

    def events(self) -> list[str]:
        db = next((self.tmp / "hub").glob("*.db"))
        with sqlite3.connect(db) as conn:
            return [r[0] for r in conn.execute(
                "select type from events where sender = ? order by seq", (self.node_id,))]


async def test_a_whole_print_through_the_hub(private_mosquitto, tmp_path: Path) -> None:
    printer = SimPrinter(print_s=4.0)
    async with PrusaLinkFarm(tmp_path, private_mosquitto.url, printer) as farm:
        job = await farm.api.submit(await farm.api.upload(GCODE, "bracket.gcode"), name="bracket")
        await farm.api.wait_job(job["id"], {"printing"}, timeout=30)
        assert printer.files[f"usb/farmhand-job-{job['id']}.gcode"].size == len(GCODE)
        await wait_for(lambda: "job_progress" in farm.events(), 10, "progress in the hub")
        await farm.post(f"/api/v1/jobs/{job['id']}/pause")
        await farm.api.wait_job(job["id"], {"paused"}, timeout=15)
        assert printer.printer_state() == "PAUSED"
        await farm.post(f"/api/v1/jobs/{job['id']}/resume")
        await farm.api.wait_job(job["id"], {"printing"}, timeout=15)
        done = await farm.api.wait_job(job["id"], {"completed", "failed", "cancelled"}, timeout=30)
        assert done["state"] == "completed", done
        events = [e for e in farm.events() if e.startswith("job_")]
        assert events[0] == "job_started" and events[-1] == "job_completed"
        assert [e for e in events if e != "job_progress"] == \
            ["job_started", "job_paused", "job_resumed", "job_completed"]
        assert printer._next_job_id == 2, "the printer started the job once"


async def test_cancel_and_emergency_stop_through_the_hub(private_mosquitto, tmp_path: Path) -> None:
    printer = SimPrinter(print_s=120.0)
    async with PrusaLinkFarm(tmp_path, private_mosquitto.url, printer) as farm:
        sha = await farm.api.upload(GCODE, "bracket.gcode")
        first = await farm.api.submit(sha, name="first")
        await farm.api.wait_job(first["id"], {"printing"}, timeout=30)
        await farm.post(f"/api/v1/jobs/{first['id']}/cancel")
        done = await farm.api.wait_job(first["id"], {"cancelled", "failed", "completed"}, timeout=15)
        assert done["state"] == "cancelled", done
        assert printer.printer_state() == "STOPPED"

        second = await farm.api.submit(sha, name="second")
        await farm.api.wait_job(second["id"], {"printing"}, timeout=30)
        await farm.post(f"/api/v1/devices/{farm.node_id}/mk4-1/emergency-stop")
        ended = await farm.api.wait_job(second["id"], {"cancelled", "failed", "completed"}, timeout=15)
        assert ended["state"] in ("cancelled", "failed"), ended
        assert printer.printer_state() == "STOPPED" and printer.job is not None and printer.job.id == 2
