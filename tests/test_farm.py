"""The whole path over a real Mosquitto: upload → job → assigned → streamed → completed.

Each test owns its broker (a Mosquitto on a free port) so it can stop it, and
so that no other farm's retained state leaks in.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from farmhand.sample_gcode import ring_tower

from .farm import OnePrinterFarm, demo_api_hint, wait_for

pytestmark = pytest.mark.integration

# Commands the host adds on its own: line-number reset, temperature polls,
# capability query, and the wait-for-moves that ends a job.
HOST_COMMANDS = ("M105", "M110", "M115", "M155", "M400")


def streamed_file_lines(gcode: str) -> list[str]:
    out = []
    for raw in gcode.splitlines():
        line = raw.split(";", 1)[0].strip()
        if line:
            out.append(line)
    return out


def job_commands(printer) -> list[str]:
    return [cmd for _, cmd in printer.executed if not cmd.startswith(HOST_COMMANDS)]


def hub_events(hub_dir: Path, sender: str) -> list[tuple[int, str]]:
    db = next(hub_dir.glob("*.db"))
    with sqlite3.connect(db) as conn:
        return [tuple(r) for r in conn.execute(
            "select seq, type from events where sender = ? order by seq", (sender,))]


async def test_upload_to_completed(private_mosquitto, tmp_path: Path) -> None:
    async with OnePrinterFarm(tmp_path, private_mosquitto.url, speed_factor=500) as farm:
        gcode = ring_tower(height_mm=1.0)
        job = await farm.api.submit(await farm.api.upload(gcode), name="ring")
        assert job["state"] == "queued"
        done = await farm.api.wait_job(job["id"], {"completed", "failed"}, timeout=60)
        assert done["state"] == "completed", done
        assert done["device"].endswith("/mk3s-1")
        assert done["lines"] == len(streamed_file_lines(gcode))
        assert job_commands(farm.printer) == streamed_file_lines(gcode)


async def test_broker_outage_loses_and_repeats_nothing(private_mosquitto, tmp_path: Path) -> None:
    """Stop the broker mid-print: the agent keeps printing and spooling; the hub gets every event once."""
    async with OnePrinterFarm(tmp_path, private_mosquitto.url, speed_factor=25) as farm:
        gcode = ring_tower(height_mm=2.0)
        job = await farm.api.submit(await farm.api.upload(gcode))
        await farm.api.wait_job(job["id"], {"printing"}, timeout=30)
        # Past the heat-up waits, so the printer is moving when the broker goes.
        await wait_for(lambda: any(cmd.startswith("G1 X") for _, cmd in farm.printer.executed), 30, "first move")
        executed_before = len(farm.printer.executed)
        private_mosquitto.stop()
        await asyncio.sleep(4)
        assert len(farm.printer.executed) > executed_before, "the print must go on while the broker is down"
        private_mosquitto.start()
        done = await farm.api.wait_job(job["id"], {"completed", "failed"}, timeout=90)
        assert done["state"] == "completed", done
        assert job_commands(farm.printer) == streamed_file_lines(gcode)
        await wait_for(lambda: farm.agent.outbox.pending() == 0, 20, "the agent's spool to drain")
        events = hub_events(tmp_path / "hub", farm.agent_config.node_id)
        seqs = [s for s, _ in events]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap: an event was lost"
        types = [t for _, t in events]
        assert types.count("job_started") == 1 and types.count("job_completed") == 1


async def test_hub_restart_keeps_jobs_and_starts_none_twice(private_mosquitto, tmp_path: Path) -> None:
    async with OnePrinterFarm(tmp_path, private_mosquitto.url, speed_factor=100) as farm:
        gcode = ring_tower(height_mm=1.6)
        sha = await farm.api.upload(gcode)
        jobs = [await farm.api.submit(sha, name=f"copy {n}") for n in range(3)]
        await farm.api.wait_job(jobs[0]["id"], {"printing"}, timeout=30)
        await farm.restart_hub()
        states = {(await farm.api.job(j["id"]))["state"] for j in jobs}
        assert states <= {"queued", "assigned", "printing", "completed"}, states
        for j in jobs:
            done = await farm.api.wait_job(j["id"], {"completed", "failed", "cancelled"}, timeout=90)
            assert done["state"] == "completed", done
        # Each copy homes once: three G28s means no job ran twice and none was lost.
        assert job_commands(farm.printer).count("G28") == 3
        assert job_commands(farm.printer) == streamed_file_lines(gcode) * 3


def test_demo_exits_when_done_with_every_job_completed(tmp_path: Path) -> None:
    env = {**os.environ, "FARMHAND_LOG_JSON": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "farmhand.cli", "demo", "--printers", "3", "--jobs", "6", "--exit-when-done",
         "--http-port", "0", "--timeout", "90", "--data-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["jobs_completed"] == 6 and summary["jobs_failed"] == 0
    assert summary["lines_streamed"] > 0 and summary["wall_s"] > 0


def test_the_demo_prints_an_api_call_that_works(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "farmhand.cli", "demo", "--printers", "1", "--no-render", "--http-port", "0",
         "--data-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "FARMHAND_LOG_JSON": "1"})
    try:
        token, url = demo_api_hint(proc)
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert len(json.load(response)["items"]) >= 1  # the farm is kept busy from the start
    finally:
        proc.terminate()
        proc.wait(30)
