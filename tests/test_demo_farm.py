"""`farmhand demo` keeps a farm busy: run its director sped up for a few minutes of farm time and check
what a visitor would see — jobs keep completing, an order moves through its stages, spools lose grams,
the render node makes frames — then photograph the farm grid for the README (desktop and phone)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from farmhand.demo import DemoFarm
from farmhand.demo_director import Director

from .prerequisites import program
from .test_panel_browser import ARGS, CHROMIUM, async_playwright, needs_chromium

pytestmark = pytest.mark.integration

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
PASSWORD = "demo-test-password"
SPEED = 40.0


async def completed(http: aiohttp.ClientSession, base: str) -> int:
    async with http.get(f"{base}/api/v1/jobs?state=completed&limit=1000") as r:
        return len((await r.json())["items"])


async def get(http: aiohttp.ClientSession, url: str) -> list[dict]:  # type: ignore[type-arg]
    async with http.get(url) as r:
        return (await r.json())["items"]


async def photograph(base: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        for name, size in {"desktop": (1280, 800), "phone": (390, 844)}.items():
            page = await browser.new_page(viewport={"width": size[0], "height": size[1]})
            await page.goto(f"{base}/panel/")
            await page.get_by_label("User name").fill("admin")
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Log in").click()
            await page.locator(".tile[data-state=printing] .thumb:not([hidden])").first.wait_for()
            await page.wait_for_timeout(500)  # the thumbnails finish loading
            await page.screenshot(path=str(SCREENSHOTS / f"farm-grid-{name}.png"))
        await browser.close()


@needs_chromium
@pytest.mark.timeout(420)
async def test_the_demo_farm_stays_busy(tmp_path: Path) -> None:
    blender = program("blender")
    farm = DemoFarm(tmp_path, printers=4, agents=2, mqtt_url=None, http_port=0, speed=SPEED, noise=0.0,
                    admin_password=PASSWORD, blender=blender)
    await farm.start()
    stop = asyncio.Event()
    try:
        base = farm.hub.http_url
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {farm.admin_token}"}) as http:
            # Farm time: an order every 2 minutes, a fault every 4 — a few of each in the run.
            director = Director(http, base, farm, speed=SPEED, fault_every_s=240, order_every_s=120)
            await director.setup()
            # Every printer starts with a spool, however long the machine took to bring the printers up.
            printers = await director.printers()
            assert len(printers) == len(farm.printers) and all(d["material"] for d in printers), printers
            running = asyncio.create_task(director.run(stop))
            checkpoints: list[int] = []
            started = time.monotonic()
            orders: list[dict] = []  # type: ignore[type-arg]
            spools: list[dict] = []  # type: ignore[type-arg]
            renders: list[dict] = []  # type: ignore[type-arg]
            while time.monotonic() - started < 240:
                await asyncio.sleep(15)
                checkpoints.append(await completed(http, base))
                orders = await get(http, f"{base}/api/v1/orders?limit=1000")
                renders = await get(http, f"{base}/api/v1/render-jobs")
                spools = await get(http, f"{base}/api/v1/spools")
                staged = any(o["stages_done"] for o in orders)
                framed = any(r["frames_done"] for r in renders)
                used = any(s["used_weight"] > 0 for s in spools)
                if len(checkpoints) >= 4 and staged and framed and used and checkpoints[-1] > checkpoints[-3] > 0:
                    break
            await photograph(base)
            stop.set()
            await running
        farm_minutes = (time.monotonic() - started) * SPEED / 60
        # Jobs keep completing: more in the last checkpoints than in the first.
        assert checkpoints[-1] > checkpoints[len(checkpoints) // 2] > 0, checkpoints
        assert any(o["stages_done"] for o in orders), [(o["status"], o["stages_done"]) for o in orders]
        assert any(s["used_weight"] > 0 for s in spools), spools
        assert any(r["frames_done"] >= 1 for r in renders), renders
        assert farm_minutes >= 10  # a few minutes of farm time at least
        assert not farm.hub.health().counters["ingest"].get("errors")
    finally:
        stop.set()
        await farm.stop()
