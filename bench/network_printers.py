"""One agent driving many networked printers, some of them dead: its CPU and memory, how fresh the hub's view
is, and whether the dead ones slow the printers that print.

    python -m bench.network_printers            # 200 printers + 20 dead, every kind this tree has
    python -m bench.network_printers --quick    # 40 printers + 8 dead (under a minute)
    python -m bench.network_printers --mix prusalink=1,bambu=1

Three processes, as in a farm: the hub (this process, on a private Mosquitto), the agent (``farmhand agent``
from the agent-only install ``.venv-agent`` that ``bench.serial_stream`` makes, so its CPU and RSS are an
agent's own, read from /proc through psutil) and the printers (``bench.network_world``:
every simulated printer, the dead hosts — closed ports and black holes on 127.0.0.1 — and a watcher on the
hub's live feed). Every printer reports once a second (the agent's poll interval is 1 s).

Two phases with the same printers: first an agent without the dead printers, then one with them. In each
phase the agent's CPU (per 100 live printers), its RSS and the staleness of the hub's view (the time from a
printer reporting a value to the hub's live feed showing it, or a newer one) are measured over ``--window``
seconds of steady reporting; then ``--jobs`` printers print one job each (pinned to them, submitted within
two seconds) and the time from submitting each to the hub showing it completed is taken. The figures of
the second phase, with the dead printers, are the result; the first phase's are printed for comparison.

    printing_slowed_by_dead = mean job time with the dead printers / mean job time without them

Goals (issue 15): CPU ≤ 5 % of a core per 100 printers, RSS ≤ 60 MB, staleness p99 ≤ 1 s, ratio ≤ 1.05.
The last line printed is one JSON object with the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from farmhand.sim.network_fleet import KINDS, available_kinds, parse_mix, split
from hub.app import Hub
from protocol.logs import configure
from tests.authkit import ADMIN_TOKEN
from tests.conftest import PrivateMosquitto
from tests.farm import Api
from tests.hubkit import hub_config

from .network_agent import AgentProcess
from .serial_stream import agent_python

GOALS = {"agent_cpu_pct_per_100_printers": 5.0, "agent_rss_mb": 60.0, "staleness_p99_s": 1.0,
         "printing_slowed_by_dead": 1.05}
SPREAD_S = 2.0
"""Jobs are submitted spread over this long (see ``print_jobs``)."""
GCODE = "G28\n" + "G1 X10 Y10 E0.5\nG1 X20 Y10 E0.5\n" * 200


def say(text: str) -> None:
    print(text, flush=True)


class World:
    """The printers' process (``bench.network_world``): its device configs, and the staleness it timed."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.proc: asyncio.subprocess.Process | None = None
        self.live: list[dict[str, Any]] = []
        self.dead: list[dict[str, Any]] = []

    async def start(self, timeout: float = 120.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.network_world", json.dumps(self.settings), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=1 << 24, cwd=Path(__file__).resolve().parent.parent)
        ready = json.loads(await asyncio.wait_for(self._line(), timeout))
        self.live, self.dead = ready["live"], ready["dead"]

    async def _line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the printers' process ended (its errors are above)")
        return line.decode()

    async def tell(self, command: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()

    async def staleness(self) -> dict[str, Any]:
        await self.tell("report")
        result: dict[str, Any] = json.loads(await self._line())
        return result

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            await self.tell("quit")
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.proc = None


async def devices_of(api: Api, node: str) -> dict[str, dict[str, Any]]:
    """The hub's view of the node's devices, by id."""
    found: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    while True:
        params = {"limit": "500", **({"cursor": cursor} if cursor else {})}
        async with api.http.get(f"{api.base}/api/v1/devices", params=params) as r:
            r.raise_for_status()
            page = await r.json()
        found.update({d["id"]: d for d in page["items"] if d["node"] == node})
        cursor = page.get("next")
        if not cursor:
            return found


async def wait_idle(api: Api, node: str, ids: list[str], timeout: float) -> float:
    """Seconds until the hub shows every one of ``ids`` online and idle."""
    started = time.monotonic()
    while True:
        seen = await devices_of(api, node)
        ready = sum(1 for i in ids if i in seen and seen[i]["online"] and seen[i]["state"] == "idle")
        if ready == len(ids):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"only {ready} of {len(ids)} printers came online on {node} in {timeout:.0f} s")
        await asyncio.sleep(0.5)


class JobTimes:
    """Each job's seconds from submit to the hub showing it completed, by device, and where the time went."""

    def __init__(self) -> None:
        self.took: dict[str, float] = {}
        self.stages: dict[str, list[float]] = {"queued": [], "dispatched": [], "printed": []}

    def done(self, device: str, seconds: float, job: dict[str, Any]) -> None:
        self.took[device] = seconds
        at = [datetime.fromisoformat(job[k]) for k in ("created_at", "assigned_at", "started_at", "finished_at")]
        for stage, (a, b) in zip(self.stages, zip(at, at[1:], strict=False), strict=True):
            self.stages[stage].append((b - a).total_seconds())

    def mean(self) -> float:
        return statistics.mean(self.took.values())

    def summary(self, kind_of: dict[str, str]) -> str:
        kinds = sorted({kind_of[i] for i in self.took})
        by_kind = {k: round(statistics.mean(t for i, t in self.took.items() if kind_of[i] == k), 2) for k in kinds}
        stages = ", ".join(f"{k} {statistics.mean(v):.2f} s" for k, v in self.stages.items())
        return (f"mean {self.mean():.2f} s, max {max(self.took.values()):.2f} s from submit to completed "
                f"(in the hub: {stages}); mean by kind {by_kind}")


async def print_jobs(api: Api, sha: str, node: str, ids: list[str], timeout: float) -> JobTimes:
    """One job on each of ``ids``, timed from submitting each to the hub showing it completed.

    The submissions are spread evenly over ``SPREAD_S``: printers report once a second, so jobs submitted at
    one instant would all meet the reports at the same phase, and the two phases' times would differ by where
    that phase fell rather than by what the agent did.
    """
    began = time.monotonic()
    jobs: dict[int, tuple[str, float]] = {}
    for n, i in enumerate(ids):
        await asyncio.sleep(max(0.0, began + SPREAD_S * n / len(ids) - time.monotonic()))
        jobs[(await api.submit(sha, name=f"{node} {i}", device=f"{node}/{i}"))["id"]] = (i, time.monotonic())
    times = JobTimes()
    while len(times.took) < len(jobs):
        for job_id, (device, submitted) in jobs.items():
            if device in times.took:
                continue
            job = await api.job(job_id)
            if job["state"] == "completed":
                times.done(device, time.monotonic() - submitted, job)
            elif job["state"] in ("failed", "cancelled"):
                raise RuntimeError(f"job {job_id} on {jobs[job_id][0]} ended {job['state']}: {job.get('error')}")
        if time.monotonic() - began > timeout:
            raise RuntimeError(f"{len(jobs) - len(times.took)} jobs did not complete in {timeout:.0f} s")
        await asyncio.sleep(0.2)
    return times


def spread(configs: list[dict[str, Any]], count: int) -> list[str]:
    """``count`` device ids taken evenly over the kinds."""
    by_kind: dict[str, list[str]] = {}
    for c in configs:
        by_kind.setdefault(c["driver"], []).append(c["id"])
    picked: list[str] = []
    while len(picked) < count and any(by_kind.values()):
        for ids in by_kind.values():
            if ids and len(picked) < count:
                picked.append(ids.pop(0))
    return picked


async def main(opts: argparse.Namespace) -> dict[str, Any]:
    kinds = parse_mix(opts.mix)
    missing = [k for k in kinds if k not in available_kinds()]
    if missing:
        raise SystemExit(f"bench.network_printers: no simulator or driver for {', '.join(missing)} in this tree")
    counts = split(opts.printers, kinds)
    say(f"{opts.printers} printers ({', '.join(f'{k} {n}' for k, n in counts.items())}) and {opts.dead} dead ones, "
        f"jobs of {opts.print_s:.0f} s on {opts.jobs} printers")
    with tempfile.TemporaryDirectory(prefix="farmhand-bench-net-") as tmp:
        work = Path(tmp)
        broker = PrivateMosquitto(work)
        broker.start()
        hub = Hub(hub_config(work / "hub", broker.url, hub_id="bench-net"))
        world = World({"workdir": str(work / "printers"), "counts": counts, "dead": opts.dead,
                       "print_s": opts.print_s, "hub": "", "token": ADMIN_TOKEN})
        api: Api | None = None
        try:
            await hub.start()
            world.settings["hub"] = hub.http_url
            api = Api(hub.http_url)
            started = time.monotonic()
            await world.start()
            say(f"printers listening after {time.monotonic() - started:.1f} s")
            sha = await api.upload(GCODE, "bench.gcode")
            printing = spread(world.live, opts.jobs)
            live_ids = [c["id"] for c in world.live]
            kind_of = {c["id"]: c["driver"] for c in world.live}
            times: dict[str, list[float]] = {"clean": [], "dead": []}
            with_dead: list[dict[str, Any]] = []
            for n, phase in enumerate(phase_order(opts.rounds)):
                node = f"bench-{phase}-{n}"
                figures, jobs = await run_phase(opts, api, world, broker.url, work / node, node, sha, printing,
                                                world.dead if phase == "dead" else [], kind_of)
                times[phase] += jobs.took.values()
                if phase == "dead":
                    with_dead.append(figures)
            result = dict(with_dead[-1])
            for key in (*GOALS, "staleness_p50_s", "staleness_max_s"):  # the worst phase with the dead printers
                values = [f[key] for f in with_dead if f.get(key) is not None]
                if values:
                    result[key] = max(values)
            clean, dead_s = statistics.mean(times["clean"]), statistics.mean(times["dead"])
            result["printing_slowed_by_dead"] = round(dead_s / clean, 3)
            result.update(printers=len(live_ids), dead=len(world.dead), kinds=counts, job_s_clean=round(clean, 2),
                          job_s_dead=round(dead_s, 2), rounds=opts.rounds)
            return result
        finally:
            if api is not None:
                await api.close()
            await world.stop()
            await hub.stop()
            broker.stop()


def phase_order(rounds: int) -> list[str]:
    """Clean and dead phases, every other round reversed (clean, dead, dead, clean…): a drift in the machine's
    load over the run then weighs on both alike."""
    return [p for r in range(rounds) for p in (("clean", "dead") if r % 2 == 0 else ("dead", "clean"))]


async def run_phase(opts: argparse.Namespace, api: Api, world: World, mqtt_url: str, workdir: Path, node: str,
                    sha: str, printing: list[str], dead: list[dict[str, Any]],
                    kind_of: dict[str, str]) -> tuple[dict[str, Any], JobTimes]:
    """An agent with every live printer (and ``dead``): its figures over the window, then its jobs' times."""
    live_ids = [c["id"] for c in world.live]
    agent = AgentProcess(workdir, node, mqtt_url, world.live + dead, opts.python)
    agent.start()
    try:
        took = await wait_idle(api, node, live_ids, timeout=opts.timeout)
        say(f"[{node}] {len(live_ids)} printers online and idle in the hub after {took:.1f} s "
            f"(agent with {len(dead)} dead printers)")
        # Every phase alike, so the hub's live feed is as busy in each.
        await world.tell(f"measure {node}")
        usage = await agent.usage(opts.window)
        fresh = await world.staleness()
        say(f"[{node}] over {opts.window:.0f} s: agent CPU {usage['cpu_pct']:.1f} % of a core, RSS "
            f"{usage['rss_mb']:.1f} MB; {fresh['shown']} of {fresh['reports']} reports shown, "
            f"staleness p50 {fresh['staleness_p50_s']} s, p99 {fresh['staleness_p99_s']} s, "
            f"max {fresh['staleness_max_s']} s, {fresh['lost']} never shown; p99 by kind "
            f"{fresh['staleness_p99_s_by_kind']}")
        jobs = await print_jobs(api, sha, node, printing, timeout=opts.print_s * 4 + 60)
        say(f"[{node}] {len(printing)} jobs: {jobs.summary(kind_of)}")
        return {**measured(usage, fresh, len(live_ids)), "agent_rss_mb": agent.rss_mb()}, jobs
    finally:
        await agent.stop()


def measured(usage: dict[str, float], fresh: dict[str, Any], printers: int) -> dict[str, Any]:
    return {"agent_cpu_pct_per_100_printers": round(usage["cpu_pct"] * 100 / printers, 2),
            "agent_cpu_pct": round(usage["cpu_pct"], 1),
            "staleness_p99_s": fresh["staleness_p99_s"], "staleness_p50_s": fresh["staleness_p50_s"],
            "staleness_max_s": fresh["staleness_max_s"],
            "staleness_p99_s_by_kind": fresh["staleness_p99_s_by_kind"], "reports_timed": fresh["shown"],
            "reports_never_shown": fresh["lost"]}


def table(result: dict[str, Any]) -> str:
    rows = [f"{'figure':34} {'measured':>10} {'goal':>8}"]
    for key, goal in GOALS.items():
        value = result.get(key)
        verdict = "" if value is None else ("ok" if value <= goal else "MISSED")
        rows.append(f"{key:34} {value!s:>10} {('≤ ' + str(goal)):>8}  {verdict}")
    return "\n".join(rows)


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 printers and 8 dead ones, shorter jobs and window")
    parser.add_argument("--printers", type=int, help="live simulated printers (default 200; 40 with --quick)")
    parser.add_argument("--dead", type=int, help="unreachable printers (default 20; 8 with --quick)")
    parser.add_argument("--mix", default="all", help=f"kinds and their shares, e.g. prusalink=1,bambu=1 "
                                                     f"(default: every kind this tree has, of {', '.join(KINDS)})")
    parser.add_argument("--jobs", type=int, help="printers that print a job in each phase (default 40; 16)")
    parser.add_argument("--print-s", type=float, help="how long each simulated print takes (default 10 s; 4)")
    parser.add_argument("--window", type=float, help="seconds of steady reporting measured in each phase (default 30; 6)")
    parser.add_argument("--rounds", type=int, help="rounds of a phase without and one with the dead printers, "
                                                   "every other reversed (default 2; 1)")
    parser.add_argument("--timeout", type=float, default=180.0, help="for the printers to come online")
    parser.add_argument("--same-python", action="store_true",
                        help="run the agent with this interpreter instead of the agent-only install (.venv-agent)")
    opts = parser.parse_args(argv)
    opts.python = sys.executable if opts.same_python else agent_python()
    quick = opts.quick
    for name, full, short in (("printers", 200, 40), ("dead", 20, 8), ("jobs", 40, 16), ("print_s", 10.0, 4.0),
                              ("window", 30.0, 6.0), ("rounds", 2, 1)):
        if getattr(opts, name) is None:
            setattr(opts, name, short if quick else full)
    return opts


if __name__ == "__main__":
    configure("warning")
    figures = asyncio.run(main(options()))
    say(table(figures))
    print(json.dumps(figures))
