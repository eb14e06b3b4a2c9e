"""A farm at scale through a real Mosquitto: what the hub keeps up with, and whether anything is lost.

    python -m bench.fleet            # 5,000 printers live, a telemetry flood, event bursts, a reconnect storm
    python -m bench.fleet --quick    # the same, smaller and shorter (under a minute)
    python -m bench.fleet --flood-rate 40000   # the flood at an offered rate instead of flat out
    python -m bench.fleet --generator agents   # the event modes' farm as simulated agents (default: lean)

Three processes, as on a farm's hub machine: Mosquitto with the shipped production config
(systemd/mosquitto-farmhand.conf; for a loopback benchmark its TLS listener, logins and ACL are left
out: one plain listener on 127.0.0.1, anonymous, everything else as shipped: queue and in-flight
limits, packet size, persistence), the hub (``python -m bench.fleet --serve-hub``), and this process
as the farm: simulated agents (``farmhand.sim.fleet_node``: the agent's own outbox and MQTT session)
with M printers each. Modes:

* ``live``: every printer sends one telemetry message a second; state staleness (the hub's
  ``farmhand_state_staleness_seconds``: the agent's timestamp to the hub's state), the hub's CPU
  per message and ``GET /api/v1/devices`` (the whole list, paged by 1,000) are measured;
* ``flood``: printers send telemetry as fast as this process can: messages the hub took in per second;
* ``burst``: connected agents append job events as fast as they can;
* ``storm``: every agent holds thousands of events and reconnects at once.

For the event modes the hub's database is counted afterwards: every event stored exactly once, none
lost. The flood and the storm also say where the CPU went (hub, broker, this process): on a small
machine the three share its cores, but on a farm each agent has a Pi of its own. So the event modes'
farm is by default the lean generator (bench.fleet_farms.LeanFarm): an agent outbox's topics, envelopes,
QoS 1, seq, window and hub confirmations over a few MQTT connections, events encoded beforehand, no
SQLite: ~2 us CPU an event timed, ~10 us to encode it before. ``--generator agents``: simulated agents,
each its SQLite outbox and gmqtt session: ~13 us timed, ~30 us to spool before (a burst times both).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.fleet_farms import GENERATORS, event_farm
from hub.store import Store, utcnow

ROOT = Path(__file__).resolve().parent.parent
BENCH_SHA = "b" * 64
TOKEN = "fh_bench_viewer_token_0123456789abcdef"


def printing_jobs(store: Store, devices: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """A printing job on every device (node -> its devices), so the agents' progress events have a job to
    move; returns node -> device -> job id."""
    with store.transaction() as db:
        db.execute("INSERT OR IGNORE INTO files VALUES (?, 'bench.gcode', 1, ?)", (BENCH_SHA, utcnow()))
        jobs: dict[str, dict[str, str]] = {}
        for node, names in devices.items():
            for device in names:
                cur = db.execute("INSERT INTO jobs (name, file_sha256, state, node, device, created_at)"
                                 " VALUES ('bench', ?, 'printing', ?, ?, ?)", (BENCH_SHA, node, device, utcnow()))
                jobs.setdefault(node, {})[device] = str(cur.lastrowid)
    return jobs


# --------------------------------------------------------------------------- the broker and the hub


def broker_config(workdir: Path, port: int) -> Path:
    """The shipped config, with its listeners, TLS files, logins and ACL replaced by one loopback listener."""
    dropped = ("listener", "cafile", "certfile", "keyfile", "tls_version", "password_file", "acl_file",
               "allow_anonymous", "persistence_location")
    lines = [line for line in (ROOT / "systemd" / "mosquitto-farmhand.conf").read_text().splitlines()
             if line.split(" ", 1)[0] not in dropped and not line.startswith("#")]
    lines += [f"listener {port} 127.0.0.1", "allow_anonymous true", f"persistence_location {workdir}/"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve_hub(data_dir: Path, broker_url: str) -> None:
    """The hub process, run as ``farmhand hub`` runs it: started by the benchmark, stopped by SIGTERM."""
    from farmhand.service import run_service
    from hub.app import Hub
    from hub.config import HubConfig

    hub = Hub(HubConfig.model_validate({
        "hub_id": "bench", "data_dir": data_dir, "http": {"host": "127.0.0.1", "port": 0},
        "mqtt": {"url": broker_url},
        "auth": {"admin_password": "bench-password-1",
                 "bootstrap_tokens": [{"name": "bench", "role": "viewer", "token": TOKEN}]},
    }))

    async def start() -> None:
        await hub.start()
        print(f"HUB {hub.http_url}", flush=True)

    await run_service(start, hub.stop)


class Services:
    """Mosquitto and the hub, each a process of its own."""

    def __init__(self, workdir: Path, devices: dict[str, list[str]]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        store = Store(workdir / "hub")
        self.jobs = printing_jobs(store, devices)
        store.close()
        self.broker = subprocess.Popen(["mosquitto", "-c", str(broker_config(workdir, self.port))],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.hub = subprocess.Popen([sys.executable, "-m", "bench.fleet", "--serve-hub", str(workdir / "hub"), self.url],
                                    cwd=ROOT, stdout=subprocess.PIPE, text=True)
        self.http = ""
        self.process = psutil.Process(self.hub.pid)
        self.processes = {"hub": self.process, "broker": psutil.Process(self.broker.pid), "farm": psutil.Process()}

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds so far of the hub, the broker and this process (the farm): where a mode's time went."""
        return {name: sum(p.cpu_times()[:2]) for name, p in self.processes.items()}

    async def wait(self) -> None:
        assert self.hub.stdout is not None
        line = await asyncio.to_thread(self.hub.stdout.readline)
        if not line.startswith("HUB "):
            raise RuntimeError(f"the hub did not start: {line!r}")
        self.http = line.split()[1]

    def stop(self) -> None:
        for proc in (self.hub, self.broker):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.workdir / "hub" / "hub.db")


# --------------------------------------------------------------------------- reading the hub


async def scrape(http: aiohttp.ClientSession, base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    async with http.get(f"{base}/metrics") as r:
        text = await r.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in metrics.items() if n == name and all(dict(ls).get(k) == w for k, w in labels.items()))


def quantile(before: dict, after: dict, name: str, q: float, **labels: str) -> float | None:
    """The q-quantile of a histogram's observations between two scrapes, interpolated within its bucket."""
    def buckets(m: dict) -> dict[float, float]:
        return {float(dict(ls)["le"]): v for (n, ls), v in m.items()
                if n == f"{name}_bucket" and all(dict(ls).get(k) == w for k, w in labels.items())}
    b, a = buckets(before), buckets(after)
    counts = sorted((le, a[le] - b.get(le, 0.0)) for le in a)
    if not counts or counts[-1][1] <= 0:
        return None
    wanted, low, below = q * counts[-1][1], 0.0, 0.0
    for le, cumulative in counts:
        if cumulative >= wanted:
            if le == float("inf"):
                return low
            return low + (le - low) * (wanted - below) / max(cumulative - below, 1e-9)
        low, below = le, cumulative
    return None


async def list_devices_ms(http: aiohttp.ClientSession, base: str) -> float:
    """The whole device list, page by page (1,000 a page): what a panel of the farm loads."""
    started = time.perf_counter()
    cursor: str | None = "0"
    while cursor is not None:
        async with http.get(f"{base}/api/v1/devices", params={"limit": "1000", "cursor": cursor}) as r:
            cursor = (await r.json())["next"]
    return (time.perf_counter() - started) * 1000


# --------------------------------------------------------------------------- the farm


def farm(url: str, workdir: Path, prefix: str, nodes: int, printers: int, **options: Any) -> list[Any]:
    from farmhand.sim.fleet_node import SimulatedNode

    return [SimulatedNode(url, f"{prefix}{i:04d}", workdir / "agents", printers, **options) for i in range(nodes)]


def device_names(prefix: str, nodes: int, printers: int) -> dict[str, list[str]]:
    return {f"{prefix}{i:04d}": [f"p{d}" for d in range(printers)] for i in range(nodes)}


async def live(svc: Services, http: aiohttp.ClientSession, nodes: list[Any], seconds: float) -> dict[str, float]:
    """Each printer one telemetry message a second, spread over the second."""
    printers = [(n, d) for n in nodes for d in n.devices]
    before, cpu0 = await scrape(http, svc.http), svc.cpu_s()["hub"]
    started = time.perf_counter()
    listings: list[float] = []
    tick, ticks = 0.05, 0
    while time.perf_counter() - started < seconds:
        share = printers[ticks % 20::20]  # a twentieth of the farm every 50 ms
        for node, device in share:
            node.telemetry(device)
        ticks += 1
        if ticks % 40 == 20:  # the whole device list, once every two seconds
            listings.append(await list_devices_ms(http, svc.http))
        await asyncio.sleep(max(0.0, started + ticks * tick - time.perf_counter()))
    await asyncio.sleep(1.0)  # the last messages through
    after, cpu = await scrape(http, svc.http), svc.cpu_s()["hub"] - cpu0
    messages = total(after, "farmhand_ingest_messages_total") - total(before, "farmhand_ingest_messages_total")
    staleness = quantile(before, after, "farmhand_state_staleness_seconds", 0.99, kind="telemetry")
    listings.sort()
    return {"printers": len(printers), "telemetry_live_per_s": round(messages / (time.perf_counter() - started)),
            "staleness_p99_s": round(staleness, 3) if staleness is not None else -1.0,
            "devices_list_ms": round(listings[len(listings) // 2], 1) if listings else -1.0,
            "devices_list_worst_ms": round(listings[-1], 1) if listings else -1.0,
            "hub_cpu_us_per_msg": round(cpu / max(messages, 1) * 1e6, 1),
            "hub_cpu_pct_live": round(cpu / seconds * 100, 1),
            "hub_rss_mb": round(svc.process.memory_info().rss / 2**20, 1)}


async def flood(svc: Services, http: aiohttp.ClientSession, nodes: list[Any], seconds: float,
                rate: float | None = None) -> dict[str, float]:
    """Telemetry as fast as this process can publish it (or ``rate`` messages a second); what the hub took in
    per second."""
    from protocol import codec, topics
    from protocol.messages import Heater, Telemetry

    ready = [(n.session, topics.device_telemetry(n.node_id, d), codec.encode(codec.make(
        n.node_id, Telemetry(device=d, temperatures={"T0": Heater(actual=210.0)})))) for n in nodes for d in n.devices]
    before, cpu0 = await scrape(http, svc.http), svc.cpu_s()
    started, sent = time.perf_counter(), 0
    while (now := time.perf_counter()) - started < seconds:
        due = len(ready) if rate is None else int((now - started) * rate) - sent
        for n in range(sent, sent + due):
            session, topic, payload = ready[n % len(ready)]
            session.publish(topic, payload)
        sent += due
        await asyncio.sleep(0 if rate is None else 0.005)
    elapsed = time.perf_counter() - started
    await asyncio.sleep(1.0)
    after, cpu1 = await scrape(http, svc.http), svc.cpu_s()
    took = total(after, "farmhand_ingest_messages_total", type="telemetry") - \
        total(before, "farmhand_ingest_messages_total", type="telemetry")
    # On a small machine the three share the cores: a sender flat out starves the broker and the hub.
    shares = {f"flood_cpu_pct_{name}": round((cpu1[name] - cpu0[name]) / (elapsed + 1.0) * 100) for name in cpu0}
    return {"telemetry_sent_per_s": round(sent / elapsed), "telemetry_per_s": round(took / elapsed),
            "telemetry_dropped_pct": round(100 * (1 - took / max(sent, 1)), 1),
            "hub_cpu_us_per_telemetry": round((cpu1["hub"] - cpu0["hub"]) / max(took, 1) * 1e6, 1), **shares}


async def events(svc: Services, farm: Any, per_node: int, *, spooled_offline: bool,
                 timeout: float) -> tuple[float, dict[str, float]]:
    """``per_node`` job events from every node of ``farm``; returns events stored (confirmed) per second, and
    the CPU microseconds an event of the hub, the broker and the farm from the start of the timed part, and
    the farm's before it (``spool``: the lean farm's encoding, a storm's agents' appending to their outboxes)."""
    ready = svc.cpu_s()["farm"]
    farm.prepare(per_node, svc.jobs)
    if spooled_offline:  # a storm: the farm held them through an outage, and comes back at once
        farm.append(per_node)
        cpu0, started = svc.cpu_s(), time.perf_counter()
        await farm.start()
    else:
        cpu0, started = svc.cpu_s(), time.perf_counter()
        for chunk in range(0, per_node, 100):
            farm.append(min(100, per_node - chunk))
            await asyncio.sleep(0)
    deadline = started + timeout
    while farm.pending() and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    count, cpu = len(farm.nodes) * per_node, svc.cpu_s()
    us = {k: round((cpu[k] - cpu0[k]) / count * 1e6, 1) for k in cpu}
    return count / (time.perf_counter() - started), {**us, "spool": round((cpu0["farm"] - ready) / count * 1e6, 1)}


def _cpu(us: dict[str, float]) -> str:
    return (f"CPU an event: hub {us['hub']} us, broker {us['broker']} us, farm {us['farm']} us"
            f" (and {us['spool']} us before the timed part)")


# --------------------------------------------------------------------------- the run

# mode: (nodes, printers or events per node, seconds)
FULL = {"live": (100, 50, 20.0), "flood": (10, 50, 10.0), "burst": (20, 2000, 0.0), "storm": (50, 2000, 0.0)}
QUICK = {"live": (20, 50, 6.0), "flood": (10, 50, 4.0), "burst": (10, 300, 0.0), "storm": (20, 300, 0.0)}


async def wait_devices(http: aiohttp.ClientSession, base: str, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while total(await scrape(http, base), "farmhand_devices_online") < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the hub did not list {count} devices within {timeout:.0f} s")
        await asyncio.sleep(0.5)


async def run(quick: bool, flood_rate: float | None = None, generator: str = "lean") -> dict[str, Any]:
    from farmhand.sim.fleet_node import start_all

    sizes = QUICK if quick else FULL
    (ln, lp, ls), (fn, _, fs), (bn, be, _), (sn, se, _) = (sizes[m] for m in ("live", "flood", "burst", "storm"))
    result: dict[str, Any] = {"quick": quick, "generator": generator}
    with tempfile.TemporaryDirectory(prefix="farmhand-fleet-") as tmp:
        workdir = Path(tmp)
        svc = Services(workdir, {**device_names("L", ln, lp), **device_names("B", bn, 2), **device_names("S", sn, 2)})
        everyone: list[Any] = []
        try:
            await svc.wait()
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                printers = farm(svc.url, workdir, "L", ln, lp)
                everyone += printers
                await start_all(printers)
                await wait_devices(http, svc.http, ln * lp)
                print(f"live: {ln * lp} printers, one telemetry message each a second, {ls:.0f} s", flush=True)
                result.update(await live(svc, http, printers, ls))
                print(f"  {_show(result)}", flush=True)
                pace = "as fast as one process sends it" if flood_rate is None else f"{flood_rate:.0f} messages a second"
                print(f"flood: {fn * lp} printers' telemetry {pace}, {fs:.0f} s", flush=True)
                flooded = await flood(svc, http, printers[:fn], fs, flood_rate)
                result.update(flooded)
                print(f"  {_show(flooded)}", flush=True)
                timeout = 120.0 if quick else 600.0
                burst = event_farm(generator, svc.url, workdir, "B", bn, 0.5)
                everyone.append(burst)
                await burst.start()
                await wait_devices(http, svc.http, ln * lp + bn * 2)
                print(f"the event modes' farm: {generator} ({GENERATORS[generator]})", flush=True)
                print(f"burst: {bn} connected nodes append {be} events each", flush=True)
                rate, cpu = await events(svc, burst, be, spooled_offline=False, timeout=timeout)
                result["events_burst_per_s"] = round(rate)
                print(f"  {result['events_burst_per_s']} events stored and confirmed per second; {_cpu(cpu)}",
                      flush=True)
                storm = event_farm(generator, svc.url, workdir, "S", sn, 1.0)
                everyone.append(storm)
                print(f"storm: {sn} nodes ({generator} generator) each holding {se} events reconnect at once",
                      flush=True)
                rate, cpu = await events(svc, storm, se, spooled_offline=True, timeout=timeout)
                result["events_stored_per_s"] = round(rate)
                # The farm's nodes cost CPU on this machine too; on a farm each agent has a Pi of its own.
                result.update({f"{name}_cpu_us_per_event": cpu[name] for name in ("hub", "broker", "farm")})
                result["farm_spool_cpu_us_per_event"] = cpu["spool"]
                print(f"  {result['events_stored_per_s']} events stored and confirmed per second; {_cpu(cpu)}",
                      flush=True)
                applied = total(await scrape(http, svc.http), "farmhand_events_stored_total")
                result["hub_rss_mb"] = max(result["hub_rss_mb"], round(svc.process.memory_info().rss / 2**20, 1))
        finally:
            await asyncio.gather(*(n.stop() for n in everyone), return_exceptions=True)
            svc.stop()
        db = svc.db()
        rows, distinct = db.execute("SELECT count(*), count(DISTINCT sender || ':' || seq) FROM events").fetchone()
        db.close()
    expected = bn * be + sn * se
    result.update({"events_sent": expected, "events_lost": expected - distinct,
                   "events_duplicated": int(applied) - distinct + rows - distinct})
    return result


def _show(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items() if k not in ("quick", "generator"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: python -m bench.fleet --quick")
    parser.add_argument("--quick", action="store_true", help="a smaller farm, shorter runs (under a minute)")
    parser.add_argument("--flood-rate", type=float, metavar="N",
                        help="the flood offers N telemetry messages a second instead of all one process can send"
                             " (a sender flat out takes CPU the broker and the hub need on a small machine)")
    parser.add_argument("--generator", choices=sorted(GENERATORS), default="lean",
                        help="the event modes' farm: " + "; ".join(f"{k}: {v}" for k, v in GENERATORS.items()))
    parser.add_argument("--serve-hub", nargs=2, metavar=("DATA_DIR", "BROKER_URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    from protocol.logs import configure

    configure("warning")
    if args.serve_hub:
        asyncio.run(serve_hub(Path(args.serve_hub[0]), args.serve_hub[1]))
        return
    print(json.dumps(asyncio.run(run(args.quick, args.flood_rate, args.generator))))


if __name__ == "__main__":
    main()
