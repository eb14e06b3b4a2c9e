"""The printers' side of ``bench.network_printers``, in a process of its own: the simulated printers, the dead
hosts, and a watcher on the hub's live feed that times how long each printer's report takes to show there.

Run by the benchmark as ``python -m bench.network_world SETTINGS_JSON``. It prints one JSON line with the
agent's device configs when its printers listen, then answers commands read from stdin, one a line:
``measure NODE`` (time reports from now on, as the hub shows them for NODE's devices), ``report`` (print the
timings as one JSON line) and ``quit``.

Timing a report: each printer's bed thermistor reads a new value at most once every ``STEP_S``; the moment a
printer first reports a new value (a poll answered, a push sent) is when it reported it. The hub's live feed
(``/api/v1/live``, what the panel reads) shows each device's state as it changes; when it shows a value, that
report and every earlier one not yet shown are done, and the time since each was reported is its staleness.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import aiohttp

from farmhand.sim.network_fleet import DeviceConfig, NetworkFleet
from protocol.logs import configure

STEP_S = 0.95
"""A printer's bed reading changes at most this often: once per report at one report a second."""
WRAP = 2000
UNSEEN_AFTER_S = 5.0
"""A report the hub has not shown this long after it was made counts as lost."""


def bed_value(k: int) -> float:
    return 20.0 + (k % WRAP) / 10


def bed_step(value: float) -> int:
    return round((value - 20.0) * 10) % WRAP


class BedStamps:
    """What each printer's bed reads, when each reading was first reported, and when the hub showed it."""

    def __init__(self) -> None:
        self._current: dict[str, tuple[int, float]] = {}
        self._pending: dict[str, deque[tuple[int, float]]] = {}
        self.measuring = False
        self.staleness: list[float] = []
        self.by_kind: dict[str, list[float]] = {}
        self.kind_of: dict[str, str] = {}
        """Each device's driver, for the staleness of each kind."""
        self.reported = 0

    def read(self, device_id: str) -> float:
        now = time.time()
        k, changed = self._current.get(device_id, (0, 0.0))
        if now - changed >= STEP_S:
            k += 1
            self._current[device_id] = (k, now)
            if self.measuring:
                self._pending.setdefault(device_id, deque()).append((k, now))
                self.reported += 1
        return bed_value(k)

    def shown(self, device_id: str, value: float, now: float) -> None:
        pending = self._pending.get(device_id)
        if not pending:
            return
        step = bed_step(value)
        match = next((k for k, _ in reversed(pending) if k % WRAP == step), None)
        if match is None:
            return
        kind = self.kind_of.get(device_id, "?")
        while pending and pending[0][0] <= match:
            _, at = pending.popleft()
            self.staleness.append(now - at)
            self.by_kind.setdefault(kind, []).append(now - at)

    def measure(self) -> None:
        self._pending.clear()
        self.staleness.clear()
        self.by_kind.clear()
        self.reported = 0
        self.measuring = True

    def summary(self) -> dict[str, Any]:
        now = time.time()
        lost = sum(1 for q in self._pending.values() for _, at in q if now - at > UNSEEN_AFTER_S)
        ordered = sorted(self.staleness)
        return {"reports": self.reported, "shown": len(ordered), "lost": lost,
                "staleness_p50_s": percentile(ordered, 0.5), "staleness_p99_s": percentile(ordered, 0.99),
                "staleness_max_s": round(ordered[-1], 3) if ordered else None,
                "staleness_p99_s_by_kind": {k: percentile(sorted(v), 0.99) for k, v in sorted(self.by_kind.items())}}


def percentile(ordered: list[float], p: float) -> float | None:
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3) if ordered else None


class DeadHosts:
    """Printers that are off the network: closed ports (refused at once) and black holes (no answer at all).

    A black hole is a listener that never accepts, its accept queue filled: the kernel then drops every new
    SYN, so a connect hangs until the client gives up, as one to a powered-off host behind a switch does.
    """

    def __init__(self) -> None:
        self._sockets: list[socket.socket] = []

    def closed_port(self) -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def black_hole(self) -> int:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        self._sockets.append(listener)
        for _ in range(2):  # fill the accept queue (backlog 0 holds one; the second waits in SYN-RECV)
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            self._sockets.append(filler)
        return port

    def configs(self, count: int, kinds: list[str], like: dict[str, DeviceConfig]) -> list[DeviceConfig]:
        """``count`` dead printers over ``kinds``, each configured like a live one of its kind, half black holes."""
        out = []
        for n in range(count):
            kind = kinds[n % len(kinds)]
            port = self.black_hole() if n % 2 else self.closed_port()
            config = {**like[kind], "id": f"dead-{kind}-{n}"}
            config["url"] = _with_port(config["url"], port)
            if kind == "bambu":
                config["serial"] = f"01P00D{n:09d}"
            out.append(config)
        return out

    def close(self) -> None:
        for s in self._sockets:
            s.close()


def _with_port(url: str, port: int) -> str:
    """The printer's URL at another port (a Bambu URL's SD card port moves too: the host is down)."""
    scheme, rest = url.split("://", 1)
    host, _, tail = rest.partition(":")
    tail = tail.split("/", 1)[1] if "/" in tail else ""
    query = f"?ftps_port={port}" if scheme == "mqtts" else ""
    return f"{scheme}://{host}:{port}{'/' + tail if tail else ''}{query}"


class HubWatcher:
    """Reads the hub's live feed for ever: every update of a watched device is a chance to see a stamped reading.

    It watches only the measured node's devices (``devices:NODE/ID``), so the births of other nodes do not flood
    its queue in the hub.
    """

    def __init__(self, base: str, token: str, stamps: BedStamps) -> None:
        self.url = base.replace("http", "ws", 1) + "/api/v1/live"
        self.token = token
        self.stamps = stamps
        self.topics: list[str] = []
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def watch(self, node: str, device_ids: list[str]) -> None:
        self.topics = [f"devices:{node}/{i}" for i in device_ids]
        if self._ws is not None and not self._ws.closed:
            await self._ws.send_json({"subscribe": self.topics})

    async def run(self) -> None:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.token}"}) as http:
            while True:
                try:
                    async with http.ws_connect(self.url, heartbeat=30, max_msg_size=0) as ws:
                        self._ws = ws
                        await ws.send_json({"subscribe": self.topics})
                        async for msg in ws:
                            if msg.type == aiohttp.WSMsgType.TEXT:
                                self._read(json.loads(msg.data), time.time())
                except (aiohttp.ClientError, OSError) as exc:
                    print(f"live feed lost: {exc}", file=sys.stderr, flush=True)
                self._ws = None
                await asyncio.sleep(0.5)

    def _read(self, updates: Any, now: float) -> None:
        if not isinstance(updates, list):
            return  # an acknowledgement
        for update in updates:
            data = update.get("data") or {}
            bed = (data.get("temperatures") or {}).get("B")
            if bed:
                self.stamps.shown(data["id"], float(bed["actual"]), now)


async def main(settings: dict[str, Any]) -> None:
    stamps = BedStamps()
    fleet = NetworkFleet(Path(settings["workdir"]), print_s=settings["print_s"], bed_sensor=stamps.read)
    dead = DeadHosts()
    watcher: asyncio.Task[None] | None = None
    try:
        live = await fleet.start(settings["counts"])
        like = {c["driver"]: c for c in live}
        stamps.kind_of = {c["id"]: c["driver"] for c in live}
        dead_configs = dead.configs(settings["dead"], sorted(like), like)
        print(json.dumps({"live": live, "dead": dead_configs}), flush=True)
        hub = HubWatcher(settings["hub"], settings["token"], stamps)
        watcher = asyncio.create_task(hub.run())
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().split():
            match line:
                case ["measure", node]:
                    stamps.measure()
                    await hub.watch(node, [c["id"] for c in live])
                case ["report"]:
                    print(json.dumps(stamps.summary()), flush=True)
                case ["quit"]:
                    break
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        await fleet.stop()
        dead.close()


if __name__ == "__main__":
    configure("warning")
    asyncio.run(main(json.loads(sys.argv[1])))
