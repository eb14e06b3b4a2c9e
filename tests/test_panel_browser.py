"""The panel end to end in real headless Chromium, on a simulated farm of 12 printers:
log in, upload and submit a G-code file, pause and resume the print from the
device page, watch the job complete. Screenshots go to artifacts/ (git-ignored)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest

from farmhand.demo import DemoFarm
from farmhand.sample_gcode import ring_tower

from .prerequisites import needs_program, package

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
PASSWORD = "browser-test-password"

needs_chromium = needs_program("chromium", CHROMIUM)


def async_playwright():  # type: ignore[no-untyped-def]
    """Playwright's entry point; the test is skipped (failed under CI) when the package is missing."""
    return package("playwright.async_api").async_playwright()


async def job_state(farm: DemoFarm, job_id: str) -> str:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {farm.admin_token}"}) as s:
        async with s.get(f"{farm.hub.http_url}/api/v1/jobs/{job_id}") as r:
            return (await r.json())["state"]


@needs_chromium
@pytest.mark.timeout(120)
async def test_login_submit_pause_resume_complete(tmp_path: Path) -> None:
    farm = DemoFarm(tmp_path, printers=12, agents=3, mqtt_url=None, http_port=0, speed=15, noise=0.0,
                    admin_password=PASSWORD)
    part = tmp_path / "tower.gcode"
    part.write_text(ring_tower(height_mm=1.2))
    ARTIFACTS.mkdir(exist_ok=True)
    await farm.start()
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            base = farm.hub.http_url

            await page.goto(f"{base}/panel/")
            await page.get_by_label("User name").fill("admin")
            await page.get_by_label("Password").fill(PASSWORD)
            await page.get_by_role("button", name="Log in").click()
            # A locator wait, not wait_for_function: the panel's CSP (rightly) forbids eval.
            await page.locator(".tile[data-state=idle]").nth(11).wait_for()
            await page.screenshot(path=str(ARTIFACTS / "panel-farm-grid.png"), full_page=True)

            await page.goto(f"{base}/panel/#/upload")
            await page.get_by_label("File to print").set_input_files(str(part))
            await page.get_by_role("button", name="Upload and queue").click()
            result = page.locator("#result[data-jobs]")
            await result.wait_for()
            job_id = await result.get_attribute("data-jobs")

            await page.goto(f"{base}/panel/#/jobs")
            row = page.locator(f"tr[data-job='{job_id}']")
            await page.wait_for_selector(f"tr[data-job='{job_id}'][data-state='printing']", timeout=30_000)
            device = (await row.locator("td").nth(4).inner_text()).strip()
            assert re.fullmatch(r"demo-.+/printer-\d+", device), device

            await page.goto(f"{base}/panel/#/device/{device}")
            await page.wait_for_selector("#state[data-state='printing']")
            await page.get_by_role("button", name="Pause print").click()
            await page.wait_for_selector("#state[data-state='paused']", timeout=20_000)
            assert await job_state(farm, job_id) == "paused"
            await page.screenshot(path=str(ARTIFACTS / "panel-device.png"), full_page=True)
            await page.get_by_role("button", name="Resume print").click()

            await page.goto(f"{base}/panel/#/jobs")
            await page.wait_for_selector(f"tr[data-job='{job_id}'][data-state='completed']", timeout=60_000)
            await browser.close()
    finally:
        await farm.stop()
