"""How many printers the panel's farm grid shows smoothly, and what open panels cost the hub.

    python -m bench.panel_load                 # 200 devices, 0/1/5 panels, 10 s CPU windows
    python -m bench.panel_load --devices 500 --window 5
    python -m bench.panel_load --quick         # 100 devices, 3 s CPU windows

A hub (embedded broker) and one scripted node with N devices run in this
process; headless Chromium (/usr/bin/chromium) opens the panel. Measured:
- render_ms: from opening the grid until all N tiles are in the DOM;
- update_ms: from publishing one telemetry reading per device until every tile shows it;
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

from hub.app import Hub
from hub.config import HubConfig
from protocol import codec, topics
from protocol.messages import DeviceInfo, DeviceState, DeviceStatus, Heater, NodeState, Telemetry
from protocol.mqtt import MqttSession

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
PASSWORD = "bench-password-1"
NODE = "bench-node"


async def ignore(*_: object) -> None:
    pass


class Node:
    def __init__(self, url: str, devices: int) -> None:
        self.ids = [f"p{i:03d}" for i in range(devices)]
        self.session = MqttSession(url, NODE, on_message=ignore, persistent=False)

    async def start(self) -> None:
        self.session.start()
        await self.session.wait_connected(10)
        await self.send(topics.node_state(NODE), NodeState(
            online=True, agent_version="bench", hostname="bench",
            devices=[DeviceInfo(id=d, kind="serial_gcode", model="bench") for d in self.ids]))
        for d in self.ids:
            await self.send(topics.device_status(NODE, d), DeviceStatus(device=d, state=DeviceState.PRINTING,
                                                                         progress=0.0))

    async def send(self, topic: str, body: object) -> None:
        await self.session.publish_confirmed(topic, codec.encode(codec.make(NODE, body)))  # type: ignore[arg-type]

    def telemetry(self, progress: float) -> None:
        for d in self.ids:
            self.session.publish(topics.device_telemetry(NODE, d), codec.encode(codec.make(NODE, Telemetry(
                device=d, progress=progress, temperatures={"T0": Heater(actual=200 + progress, target=215)}))), qos=0)


async def hub_cpu(node: Node, window: float) -> float:
    proc = psutil.Process()
    before = proc.cpu_times()
    started = time.monotonic()
    tick = 0
    while time.monotonic() - started < window:
        tick += 1
        node.telemetry((tick % 100) / 100)
        await asyncio.sleep(1.0)
    after = proc.cpu_times()
    return 100 * ((after.user - before.user) + (after.system - before.system)) / (time.monotonic() - started)


def record(result: dict[str, object], key: str, value: float, what: str) -> None:
    """Keep a figure for the JSON line and say it now, so a long run shows its progress."""
    result[key] = value
    print(f"{what}: {value}", flush=True)


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
    await page.get_by_role("button", name="Log in").click()
    return page


async def main(devices: int, window: float) -> dict[str, object]:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="farmhand-bench-") as tmp:
        hub = Hub(HubConfig.model_validate({
            "hub_id": "bench", "data_dir": Path(tmp), "http": {"host": "127.0.0.1", "port": 0},
            "mqtt": {"embedded_port": 0}, "auth": {"admin_password": PASSWORD},
            "telemetry_history_interval_s": 10.0}))
        await hub.start()
        node = Node(hub.mqtt_url, devices)
        await node.start()
        result: dict[str, object] = {"devices": devices, "cpu_window_s": window}
        try:
            record(result, "hub_cpu_pct_0_panels", round(await hub_cpu(node, window), 1), "hub CPU %, no panel open")
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
                page = await open_panel(browser, hub.http_url)
                started = time.perf_counter()
                await until(page, f"document.querySelectorAll('.tile').length >= {devices}")
                record(result, "render_ms", round((time.perf_counter() - started) * 1000),
                       f"grid of {devices} shown, ms")
                started = time.perf_counter()
                node.telemetry(0.5)
                await until(page, "[...document.querySelectorAll('.tile .bar > i')]"
                                  f".filter(i => i.style.width === '50%').length >= {devices}")
                record(result, "update_all_tiles_ms", round((time.perf_counter() - started) * 1000),
                       "one reading per device shown on every tile, ms")
                record(result, "hub_cpu_pct_1_panel", round(await hub_cpu(node, window), 1), "hub CPU %, 1 panel open")
                for _ in range(4):
                    extra = await open_panel(browser, hub.http_url)
                    await until(extra, f"document.querySelectorAll('.tile').length >= {devices}")
                record(result, "hub_cpu_pct_5_panels", round(await hub_cpu(node, window), 1),
                       "hub CPU %, 5 panels open")
                result["live"] = hub.surface.counters()
                await browser.close()
        finally:
            await node.session.stop()
            await hub.stop()
        return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=None, help="devices on the grid (200; 100 with --quick)")
    parser.add_argument("--window", type=float, default=None,
                        help="seconds per CPU measurement (10; 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer devices and shorter windows: under a minute")
    args = parser.parse_args()
    from protocol import logs

    logs.configure("warning", json=True)
    devices = args.devices or (100 if args.quick else 200)
    window = args.window or (3.0 if args.quick else 10.0)
    print(json.dumps(asyncio.run(main(devices, window))))
