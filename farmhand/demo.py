"""`farmhand demo`: a whole farm on one machine — hub, broker, agents, virtual printers, a render node.

Until Ctrl-C the farm is kept busy by ``demo_director.Director`` (jobs, orders, spools, faults, renders);
``--exit-when-done`` runs a fixed batch for scripts instead.

Everything is real except the printers: jobs go in over HTTP, the hub schedules
them over MQTT, agents fetch the files and stream them over pseudo-terminals to
simulated firmware, and events flow back to the hub's database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from . import demo_network
from .demo_director import Director, find_blender
from .sample_gcode import ring_tower

log = structlog.get_logger("farmhand.demo")

TERMINAL = {"completed", "failed", "cancelled"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--printers", type=int, default=4, help="virtual printers in the farm (default 4)")
    p.add_argument("--agents", type=int, default=0, help="agent processes to spread them over (default: one per 2 printers)")
    p.add_argument("--jobs", type=int, default=8, help="with --exit-when-done: sample jobs to submit (default 8)")
    p.add_argument("--mqtt", metavar="URL", default=None,
                   help="use this broker (mqtt://host:1883) instead of the hub's embedded one")
    p.add_argument("--http-port", type=int, default=8080, help="hub HTTP port (0 picks a free one; default 8080)")
    p.add_argument("--speed", type=float, default=None,
                   help="the farm runs this many times faster than real: printers, faults, orders "
                        "(default 5, a pace a person can watch; 200 with --exit-when-done)")
    p.add_argument("--fault-every", type=float, default=600.0, metavar="S",
                   help="farm seconds between faults: a filament runout, then a thermal runaway (default 600)")
    p.add_argument("--order-every", type=float, default=300.0, metavar="S",
                   help="farm seconds between customers' orders (default 300)")
    p.add_argument("--no-render", action="store_true", help="no Blender render node even when Blender is installed")
    p.add_argument("--noise", type=float, default=0.0, help="probability of a corrupted serial line (e.g. 0.01)")
    p.add_argument("--data-dir", type=Path, default=None, help="keep the farm's state here (default: a temporary folder)")
    p.add_argument("--exit-when-done", action="store_true",
                   help="for scripts: submit --jobs jobs, exit once every one finished and print a JSON summary "
                        "(without it the farm keeps busy until Ctrl-C)")
    p.add_argument("--timeout", type=float, default=300.0, help="with --exit-when-done, give up after this many seconds")
    p.add_argument("--password", default=None, help="the panel's admin password (default: generated and printed)")
    demo_network.add_arguments(p)


async def run_from_args(args: argparse.Namespace) -> int:
    if args.printers < 1 or args.jobs < 0:
        raise SystemExit("farmhand demo: --printers must be ≥ 1 and --jobs ≥ 0")
    if args.speed is None:
        args.speed = 200.0 if args.exit_when_done else 5.0
    if args.speed <= 0:
        raise SystemExit("farmhand demo: --speed must be > 0")
    if args.data_dir is None:
        with tempfile.TemporaryDirectory(prefix="farmhand-demo-") as tmp:
            return await _run(args, Path(tmp))
    args.data_dir.mkdir(parents=True, exist_ok=True)
    return await _run(args, args.data_dir)


class DemoFarm:
    """Starts and stops the pieces; knows nothing about jobs."""

    def __init__(self, data_dir: Path, *, printers: int, agents: int, mqtt_url: str | None, http_port: int,
                 speed: float, noise: float, admin_password: str | None = None, blender: str | None = None,
                 network_printers: bool = False) -> None:
        """``blender``: the Blender to give a render node (none without it); ``network_printers``: one
        simulated printer of each network kind (``demo_network``)."""
        self.data_dir = data_dir
        # Fresh credentials per run: the demo's hub has auth on like any other.
        self.admin_password = admin_password or secrets.token_urlsafe(9)
        self.admin_token = "fh_demo_admin_" + secrets.token_urlsafe(24)
        self.agent_token = "fh_demo_agent_" + secrets.token_urlsafe(24)
        self.printer_count = printers
        self.agent_count = agents or math.ceil(printers / 2)
        self.mqtt_url = mqtt_url
        self.http_port = http_port
        self.speed = speed
        self.noise = noise
        self.blender = blender
        self.network_printers = network_printers
        self.network_fleet: Any = None
        self.printers: list[Any] = []
        self.agents: list[Any] = []
        self.hub: Any = None

    async def start(self) -> None:
        from hub.app import Hub
        from hub.config import HubConfig

        from .sim.printer import VirtualPrinter

        mqtt: dict[str, Any] = {"url": self.mqtt_url} if self.mqtt_url else {"embedded_port": 0}
        self.hub = Hub(HubConfig.model_validate({
            "hub_id": "demo",
            "data_dir": self.data_dir / "hub",
            "http": {"host": "127.0.0.1", "port": self.http_port},
            "mqtt": mqtt,
            "auth": {"admin_password": self.admin_password, "bootstrap_tokens": [
                {"name": "demo-admin", "role": "admin", "token": self.admin_token},
                {"name": "demo-agents", "role": "agent", "token": self.agent_token}]},
        }))
        await self.hub.start()

        ttys = self.data_dir / "tty"
        ttys.mkdir(parents=True, exist_ok=True)
        for i in range(self.printer_count):
            printer = VirtualPrinter(ttys / f"printer{i}", speed_factor=self.speed, noise=self.noise, seed=i)
            await printer.start()
            self.printers.append(printer)

        run_id = self.data_dir.name[-6:].replace("_", "x")
        for a in range(self.agent_count):
            devices = [
                {"id": f"printer-{i}", "driver": "serial_gcode", "port": str(ttys / f"printer{i}"),
                 "baud": 250000, "profile": "marlin2", "model": "prusa-mk3s"}
                for i in range(a, self.printer_count, self.agent_count)
            ]
            await self._start_agent(f"demo-{run_id}-node-{a}", devices)
        if self.blender:
            await self._start_agent(f"demo-{run_id}-render", [{"id": "blender", "driver": "blender",
                                                                "blender": self.blender}])
        await self._start_network_printers()

    async def _start_network_printers(self) -> None:
        """The place for one simulated printer of each network kind (OctoPrint, Moonraker, PrusaLink,
        Bambu): their simulators start here and join through ``_start_agent`` like the serial ones."""
        if self.network_printers:
            self.network_fleet, devices = await demo_network.start_fleet(self.data_dir)
            await self._start_agent(f"demo-{self.data_dir.name[-6:].replace('_', 'x')}-network", devices)

    async def _start_agent(self, node_id: str, devices: list[dict[str, Any]]) -> None:
        from agent.config import AgentConfig
        from agent.node import Agent

        agent = Agent(AgentConfig.model_validate({
            "node_id": node_id, "mqtt": {"url": self.hub.mqtt_url}, "storage": {"dir": self.data_dir / node_id},
            "hub": {"token": self.agent_token}, "telemetry_interval_s": 1.0, "devices": devices,
        }))
        await agent.start()
        self.agents.append(agent)

    async def stop(self) -> None:
        for agent in self.agents:
            await agent.stop()
        for printer in self.printers:
            await printer.stop()
        if self.network_fleet is not None:
            await self.network_fleet.stop()
        if self.hub is not None:
            await self.hub.stop()


async def submit_jobs(http: aiohttp.ClientSession, base: str, count: int) -> list[str]:
    """Upload a handful of distinct parts and queue `count` jobs from them."""
    ids = []
    for n in range(count):
        gcode = ring_tower(name=f"demo part {n % 3}", diameter_mm=16 + 4 * (n % 3), height_mm=3.0)
        async with http.post(f"{base}/api/v1/files", params={"name": f"ring-{n % 3}.gcode"},
                             data=gcode.encode(), headers={"Content-Type": "application/octet-stream"}) as r:
            r.raise_for_status()
            sha = (await r.json())["sha256"]
        async with http.post(f"{base}/api/v1/jobs", json={"file_sha256": sha, "name": f"job {n + 1}"}) as r:
            r.raise_for_status()
            ids.append(str((await r.json())["id"]))
    return ids


def _render(jobs: list[dict[str, Any]], started: float) -> str:
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j["state"]] = counts.get(j["state"], 0) + 1
    running = [
        f"{j['device']}:{round(100 * (j.get('progress') or 0)):>3}%"
        for j in jobs if j["state"] in ("assigned", "printing", "paused")
    ]
    summary = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    return f"[{time.monotonic() - started:6.1f}s] {summary}  {'  '.join(running)}"


async def _run(args: argparse.Namespace, data_dir: Path) -> int:
    blender = None if args.exit_when_done or args.no_render else find_blender()
    farm = DemoFarm(data_dir, printers=args.printers, agents=args.agents, mqtt_url=args.mqtt,
                    http_port=args.http_port, speed=args.speed, noise=args.noise, admin_password=args.password,
                    blender=blender, network_printers=args.network_printers)
    out = sys.stdout
    try:
        await farm.start()
        base = farm.hub.http_url
        print(f"farmhand demo: hub {base}  broker {farm.hub.mqtt_url}  "
              f"{farm.printer_count} printers on {farm.agent_count} agents"
              f"{'  render node: ' + blender if blender else ''}", file=out, flush=True)
        print(f"farmhand demo: panel {base}/panel/  user admin  password {farm.admin_password}", file=out, flush=True)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {farm.admin_token}"}) as http:
            if args.exit_when_done:
                return await _batch(args, farm, http, out)
            return await _busy(args, farm, http, out)
    except asyncio.CancelledError:
        return 130
    finally:
        await farm.stop()


async def _busy(args: argparse.Namespace, farm: DemoFarm, http: aiohttp.ClientSession, out: Any) -> int:
    """Until Ctrl-C: the director keeps the farm busy; a status line whenever the picture changes."""
    base = farm.hub.http_url
    director = Director(http, base, farm, speed=args.speed, fault_every_s=args.fault_every,
                        order_every_s=args.order_every)
    await director.setup()
    await director.keep_queue_full()
    print(f"farmhand demo: running at {args.speed:g}x until Ctrl-C; try: "
          f"curl -H 'Authorization: Bearer {farm.admin_token}' {base}/api/v1/jobs", file=out, flush=True)
    stop = asyncio.Event()
    running = asyncio.create_task(director.run(stop), name="demo:director")
    started, last = time.monotonic(), ""
    try:
        while not running.done():
            async with http.get(f"{base}/api/v1/jobs?limit=1000") as r:
                jobs = (await r.json())["items"]
            line = _render(jobs, started) + "  " + " ".join(f"{k}={v}" for k, v in director.counts.items() if v)
            if line.split("  ", 1)[-1] != last.split("  ", 1)[-1]:
                print(line, file=out, flush=True)
                last = line
            await asyncio.sleep(2.0)
    finally:
        stop.set()
        await asyncio.gather(running, return_exceptions=True)
    return 0


async def _batch(args: argparse.Namespace, farm: DemoFarm, http: aiohttp.ClientSession, out: Any) -> int:
    """--exit-when-done: a fixed batch of jobs, then one JSON summary line."""
    base = farm.hub.http_url
    started = time.monotonic()
    ids = await submit_jobs(http, base, args.jobs)
    print(f"farmhand demo: submitted {len(ids)} jobs; try: "
          f"curl -H 'Authorization: Bearer {farm.admin_token}' {base}/api/v1/jobs", file=out, flush=True)
    last = ""
    deadline = started + args.timeout
    while True:
        async with http.get(f"{base}/api/v1/jobs") as r:
            jobs = [j for j in (await r.json())["items"] if str(j["id"]) in ids] if ids else []
        line = _render(jobs, started)
        if line.split("  ", 1)[-1] != last.split("  ", 1)[-1]:
            print(line, file=out, flush=True)
            last = line
        if all(j["state"] in TERMINAL for j in jobs) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    summary = {
        "jobs_submitted": len(ids),
        "jobs_completed": sum(j["state"] == "completed" for j in jobs),
        "jobs_failed": sum(j["state"] in ("failed", "cancelled") for j in jobs),
        "lines_streamed": sum(j.get("lines") or 0 for j in jobs),
        "resends": sum(j.get("resends") or 0 for j in jobs),
        "printers": farm.printer_count,
        "agents": farm.agent_count,
        "wall_s": round(time.monotonic() - started, 2),
    }
    print_s = sum(j.get("duration_s") or 0 for j in jobs)
    summary["lines_per_s"] = round(summary["lines_streamed"] / print_s, 1) if print_s else None
    print(json.dumps(summary), file=out, flush=True)
    return 0 if summary["jobs_completed"] == len(ids) else 1
