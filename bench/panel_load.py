"""How many printers the panel's farm grid shows smoothly, and what open panels cost the hub.

    python -m bench.panel_load                 # 200 devices, 0/1/5 panels, 10 s CPU windows
    python -m bench.panel_load --devices 500 --window 5
    python -m bench.panel_load --quick         # 100 devices, 3 s CPU windows

A hub (embedded broker) and scripted nodes (250 devices each) with N devices run in this
process, its garbage collector settled as `farmhand hub` settles it once started; headless Chromium
(/usr/bin/chromium) opens the panel. Measured:
- render_ms: from opening /panel/ (logged in, a fresh page load) until the grid knows all N devices and every tile on screen is filled
  (the grid is windowed: only the rows on screen exist in the DOM);
- update_all_tiles_ms: from publishing one telemetry reading per device until every tile on screen shows
  it, watching the bottom of the grid (the devices published last); then, untimed, the top shows it too;
- hub CPU (this process, so the node's publishing is counted in every row alike) over a
  window in which every device reports at 1 Hz, with 0, 1 and 5 panels open.
The last line printed is one JSON object with the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import psutil

from farmhand.service import settle_memory
from hub.app import Hub
from hub.config import HubConfig
from protocol import codec, topics
from protocol.messages import DeviceInfo, DeviceState, DeviceStatus, Heater, NodeState, Telemetry
from protocol.mqtt import MqttSession
from tests.conftest import PrivateMosquitto

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
PASSWORD = "bench-password-1"
NODE = "bench-node"
# A node's birth lists at most DEVICES_PER_NODE_MAX devices: a big farm is many nodes, as in life.
PER_NODE = 250


async def ignore(*_: object) -> None:
    pass


class Node:
    """One scripted agent with up to PER_NODE printing devices."""

    def __init__(self, url: str, name: str, ids: list[str]) -> None:
        self.name = name
        self.ids = ids
        self.session = MqttSession(url, name, on_message=ignore, persistent=False)

    async def start(self) -> None:
        self.session.start()
        await self.session.wait_connected(10)
        await self.send(topics.node_state(self.name), NodeState(
            online=True, agent_version="bench", hostname="bench",
            devices=[DeviceInfo(id=d, kind="serial_gcode", model="bench") for d in self.ids]))
        for d in self.ids:
            await self.send(topics.device_status(self.name, d), DeviceStatus(device=d, state=DeviceState.PRINTING,
                                                                              progress=0.0))

    async def send(self, topic: str, body: object) -> None:
        await self.session.publish_confirmed(topic, codec.encode(codec.make(self.name, body)))  # type: ignore[arg-type]

    def readings(self, progress: float) -> list[tuple[str, bytes]]:
        return [(topics.device_telemetry(self.name, d), codec.encode(codec.make(self.name, Telemetry(
            device=d, progress=progress, temperatures={"T0": Heater(actual=200 + progress, target=215)}))))
            for d in self.ids]

    def send_readings(self, readings: list[tuple[str, bytes]]) -> None:
        for topic, payload in readings:
            self.session.publish(topic, payload, qos=0)


class Farm:
    """N devices spread over as many nodes as their births need."""

    def __init__(self, url: str, devices: int) -> None:
        ids = [f"p{i:04d}" for i in range(devices)]
        self.nodes = [Node(url, f"{NODE}-{n // PER_NODE:02d}", ids[n:n + PER_NODE])
                      for n in range(0, devices, PER_NODE)]
        self.first_ref = f"{self.nodes[0].name}/{ids[0]}"
        self.last_ref = f"{self.nodes[-1].name}/{ids[-1]}"

    async def start(self) -> None:
        await asyncio.gather(*(n.start() for n in self.nodes))

    async def stop(self) -> None:
        await asyncio.gather(*(n.session.stop() for n in self.nodes))

    def readings(self, progress: float) -> list[list[tuple[str, bytes]]]:
        """Encoded ahead, so a timed round measures the broker and the hub, not this script's encoder."""
        return [n.readings(progress) for n in self.nodes]

    def send(self, readings: list[list[tuple[str, bytes]]]) -> None:
        for node, batch in zip(self.nodes, readings, strict=True):
            node.send_readings(batch)

    def telemetry(self, progress: float) -> None:
        self.send(self.readings(progress))


async def hub_cpu(hub: Hub, farm: Farm, window: float) -> float:
    proc = psutil.Process()
    before = proc.cpu_times()
    started = time.monotonic()
    tick = 0
    while time.monotonic() - started < window:
        tick += 1
        farm.telemetry((tick % 100) / 100)
        await asyncio.sleep(1.0)
    after = proc.cpu_times()
    cpu = 100 * ((after.user - before.user) + (after.system - before.system)) / (time.monotonic() - started)
    await drained(hub, farm, (tick % 100) / 100)
    return cpu


async def drained(hub: Hub, farm: Farm, progress: float, timeout: float = 120.0) -> None:
    """Wait until the hub has the last device's last reading, so the next figure starts from a quiet broker."""
    node, device = farm.last_ref.split("/")
    deadline = time.monotonic() + timeout
    while True:
        reading = hub.fleet.latest_telemetry(node, device)
        if reading is not None and reading.progress == progress:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("the hub did not get the last reading: the broker is still behind")
        await asyncio.sleep(0.05)


def record(result: dict[str, object], key: str, value: float, what: str) -> None:
    """Keep a figure for the JSON line and say it now, so a long run shows its progress."""
    result[key] = value
    print(f"{what}: {value}", flush=True)


# Every tile on screen shows the 50 % reading.
ALL_HALF = ("(() => { const bars = [...document.querySelectorAll('.tile .bar > i')];"
            " return bars.length > 0 && bars.every(i => i.style.width === '50%'); })()")


def shown(devices: int) -> str:
    """The grid knows all devices and every tile on screen is filled in."""
    return ("(() => { const g = document.getElementById('grid'); if (!g || g.dataset.total !== '%d') return false;"
            " const t = [...g.querySelectorAll('.tile')];"
            " return t.length > 0 && t.every(x => x.querySelector('.name').textContent); })()" % devices)


async def until(page, expression: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    """Poll a JS expression (evaluated over CDP, which the panel's CSP allows, unlike wait_for_function)."""
    deadline = time.monotonic() + timeout
    while not await page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout} s: {expression}")
        await asyncio.sleep(0.01)


async def open_panel(browser, base: str):  # type: ignore[no-untyped-def]
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await page.goto(f"{base}/panel/#/login")
    await page.get_by_label("User name").fill("admin")
    await page.get_by_label("Password").fill(PASSWORD)
    return page


async def log_in(page) -> None:  # type: ignore[no-untyped-def]
    await page.get_by_role("button", name="Log in").click()


async def main(devices: int, window: float, embedded: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="farmhand-bench-") as tmp:
        if embedded:
            return await measure(devices, window, Path(tmp), {"embedded_port": 0})
        broker = PrivateMosquitto(Path(tmp))
        broker.start()
        try:
            return await measure(devices, window, Path(tmp), {"url": broker.url})
        finally:
            broker.stop()


async def measure(devices: int, window: float, tmp: Path, mqtt: dict[str, object]) -> dict[str, object]:
    from playwright.async_api import async_playwright

    hub = Hub(HubConfig.model_validate({
        "hub_id": "bench", "data_dir": tmp / "hub", "http": {"host": "127.0.0.1", "port": 0},
        "mqtt": mqtt, "auth": {"admin_password": PASSWORD},
        "telemetry_history_interval_s": 10.0}))
    await hub.start()
    settle_memory()  # as `farmhand hub` does once started
    farm = Farm(hub.mqtt_url, devices)
    await farm.start()
    result: dict[str, object] = {"devices": devices, "cpu_window_s": window,
                                 "broker": "embedded" if "embedded_port" in mqtt else "mosquitto"}
    try:
        record(result, "hub_cpu_pct_0_panels", round(await hub_cpu(hub, farm, window), 1), "hub CPU %, no panel open")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = await open_panel(browser, hub.http_url)
            await log_in(page)
            await until(page, shown(devices))
            # Timed: opening the grid as a logged-in operator does (the login's password hash is not the grid's).
            await page.goto("about:blank")
            started = time.perf_counter()
            await page.goto(f"{hub.http_url}/panel/#/grid")
            await until(page, shown(devices))
            record(result, "render_ms", round((time.perf_counter() - started) * 1000),
                   f"grid of {devices} shown, tiles on screen filled, ms")
            result["tiles_in_dom"] = await page.evaluate("document.querySelectorAll('.tile').length")
            # The last devices' readings are published last: watch them, at the bottom of the grid.
            await page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            await until(page, f"!!document.querySelector('.tile[aria-label=\"device {farm.last_ref}\"]')")
            half = farm.readings(0.5)
            started = time.perf_counter()
            farm.send(half)
            await drained(hub, farm, 0.5)
            record(result, "hub_has_readings_ms", round((time.perf_counter() - started) * 1000),
                   "the hub holds every reading (broker and ingest), ms")
            hub_has = time.perf_counter()
            await until(page, ALL_HALF)
            done = time.perf_counter()
            record(result, "update_all_tiles_ms", round((done - started) * 1000),
                   "one reading per device shown on every tile on screen, ms")
            record(result, "panel_update_ms", round((done - hub_has) * 1000),
                   "of which after the hub held them all (live feed and panel), ms")
            # Untimed: the tiles scrolled back into view show the reading too (it was kept, not dropped).
            await page.evaluate("window.scrollTo(0, 0)")
            await until(page, f"!!document.querySelector('.tile[aria-label=\"device {farm.first_ref}\"]')", 10)
            await until(page, ALL_HALF, 10)
            record(result, "hub_cpu_pct_1_panel", round(await hub_cpu(hub, farm, window), 1), "hub CPU %, 1 panel open")
            for _ in range(4):
                extra = await open_panel(browser, hub.http_url)
                await log_in(extra)
                await until(extra, shown(devices))
            record(result, "hub_cpu_pct_5_panels", round(await hub_cpu(hub, farm, window), 1),
                   "hub CPU %, 5 panels open")
            result["live"] = hub.surface.counters()
            await browser.close()
    finally:
        await farm.stop()
        await hub.stop()
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=None, help="devices on the grid (200; 100 with --quick)")
    parser.add_argument("--window", type=float, default=None,
                        help="seconds per CPU measurement (10; 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer devices and shorter windows: under a minute")
    parser.add_argument("--embedded-broker", action="store_true",
                        help="use the hub's embedded broker (the demo's) instead of a private Mosquitto")
    args = parser.parse_args()
    from protocol import logs

    logs.configure("warning", json=True)
    devices = args.devices or (100 if args.quick else 200)
    window = args.window or (3.0 if args.quick else 10.0)
    print(json.dumps(asyncio.run(main(devices, window, args.embedded_broker))))
