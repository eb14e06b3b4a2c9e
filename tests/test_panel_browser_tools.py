"""The panel's device console, farm-grid material and render frame grid in real headless Chromium,
against a hub with scripted nodes: a printer that answers G-code like Marlin, a render node that
delivers a frame. Screenshots go to artifacts/ (git-ignored)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from protocol.messages import CommandAck, ConsoleOutput, SendGcode

from .authkit import ADMIN_PASSWORD
from .hubkit import Farm, ScriptedNode, isolated_farm  # noqa: F401 - fixtures
from .test_panel_browser import ARGS, ARTIFACTS, CHROMIUM, async_playwright, needs_chromium
from .test_render_frames import CPU_NODE, deliver, png, start, submit

pytestmark = pytest.mark.integration


async def marlin_console(node: ScriptedNode) -> None:
    """Answers every console command as Marlin answers M105."""
    while True:
        cmd = await node.command(timeout=3600)
        if isinstance(cmd, SendGcode):
            await node.event(ConsoleOutput(device=cmd.device, command_id=cmd.command_id,
                                           lines=["ok T:21.3 /0.0 B:20.9 /0.0 @:0 B@:0"]))
            await node.event(CommandAck(command_id=cmd.command_id, status="done"))


@needs_chromium
@pytest.mark.timeout(60)
async def test_console_material_and_frame_grid(isolated_farm: Farm) -> None:
    hub = await isolated_farm.hub()
    http = isolated_farm.http(hub)
    printer = await isolated_farm.node("mk4")
    renderer = await isolated_farm.node("r1", render=CPU_NODE)
    answering = asyncio.create_task(marlin_console(printer))
    filament = (await http.call("POST", "/api/v1/filaments", json={
        "name": "Signal Orange", "material": "PETG", "color_hex": "#ff6600", "density": 1.27, "weight": 1000}))[1]
    spool = (await http.call("POST", "/api/v1/spools", json={"filament_id": filament["id"], "used_weight": 180}))[1]
    await http.call("POST", f"/api/v1/devices/{printer.id}/mk4/spool", json={"spool_id": spool["id"]})
    job_id = await submit(http, frame_start=1, frame_end=3, chunk_size=3, preview=False, name="turntable")
    task = await start(renderer)
    await deliver(hub, renderer, task, 1, png(64, 36))
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            confirmed: list[str] = []

            def accept(dialog) -> None:  # type: ignore[no-untyped-def]
                confirmed.append(dialog.message)
                asyncio.ensure_future(dialog.accept())
            page.on("dialog", accept)
            base = hub.http_url
            await page.goto(f"{base}/panel/")
            await page.get_by_label("User name").fill("admin")
            await page.get_by_label("Password").fill(ADMIN_PASSWORD)
            await page.get_by_role("button", name="Log in").click()

            tile = page.get_by_label(f"device {printer.id}/mk4")
            material = tile.get_by_label("loaded material")
            await material.wait_for()
            assert "PETG Signal Orange · 820 g" in " ".join((await material.inner_text()).split())
            colour = await material.locator(".swatch").evaluate("s => getComputedStyle(s).backgroundColor")
            assert colour == "rgb(255, 102, 0)"

            await page.goto(f"{base}/panel/#/device/{printer.id}/mk4")
            await page.get_by_label("G-code to send").fill("M105")
            await page.get_by_role("button", name="Send G-code").click()
            console = page.get_by_label("Console output")
            await console.locator(".received", has_text="ok T:21.3").wait_for(timeout=10_000)
            assert await console.locator(".sent").all_inner_texts() == ["> M105"]
            assert await page.get_by_label("G-code to send").input_value() == ""
            await page.screenshot(path=str(ARTIFACTS / "panel-console.png"), full_page=True)

            await page.goto(f"{base}/panel/#/render")
            await page.get_by_role("link", name="turntable").click()
            await page.locator(".frame[data-state=done] img").wait_for()
            assert await page.locator(".frame[data-state=done] img").evaluate("i => i.complete && i.naturalWidth") == 64
            assert await page.locator(".frame").evaluate_all("cells => cells.map(c => c.dataset.state)") == [
                "done", "rendering", "queued"]
            assert "1/3 frames" in await page.locator("#render-info").inner_text()
            await page.get_by_role("button", name="Pause render job").click()
            await page.wait_for_selector("#render-state[data-state=paused]")
            assert confirmed[-1] == f"Pause render job {job_id}?"
            await page.screenshot(path=str(ARTIFACTS / "panel-render-frames.png"), full_page=True)
            await browser.close()
    finally:
        answering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answering
