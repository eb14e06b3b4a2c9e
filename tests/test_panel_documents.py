"""The panel's paper in real headless Chromium: a scanned spool label's link opens the spool page
(after the login), which loads the spool on a printer and downloads its label; the quotes page
shows and downloads the quote PDF; an operator acknowledges an alert."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.alerts import raise_alert

from .authkit import ADMIN_PASSWORD
from .hubkit import Farm, isolated_farm  # noqa: F401 - fixtures
from .paperkit import pdf_text, qr_codes
from .test_farm_queue import GCODE, ok, spool
from .test_panel_browser import ARGS, ARTIFACTS, CHROMIUM, async_playwright, needs_chromium

pytestmark = pytest.mark.integration


@needs_chromium
@pytest.mark.timeout(120)
async def test_panel_shows_and_downloads_documents_and_acknowledges_alerts(isolated_farm: Farm,
                                                                          tmp_path: Path) -> None:
    hub = await isolated_farm.hub()
    http = isolated_farm.http(hub)
    base = hub.http_url
    node = await isolated_farm.node("a")
    sha = await http.upload(GCODE, "bracket.gcode")
    quote = await ok(http, "POST", "/api/v1/quotes/drafts", 201, json={
        "customer": "Zoë Müller GmbH", "lines": [{"file_sha256": sha, "copies": 4, "material": "PETG"}]})
    spool_id = await spool(http, "PETG", "#FF8000", 750)
    assert hub.store is not None
    raise_alert(hub.store.db, "low_stock", f"spool/{spool_id}", "spool almost empty")
    ARTIFACTS.mkdir(exist_ok=True)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = await browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
        page = await context.new_page()

        # What a phone does with a spool label: open its link, log in, land on the spool.
        await page.goto(f"{base}/panel/#/spool/{spool_id}")
        await page.get_by_label("User name").fill("admin")
        await page.get_by_label("Password").fill(ADMIN_PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await page.get_by_role("heading", name=f"Spool #{spool_id}").wait_for()
        await page.get_by_label("Printer to load").select_option(f"{node.id}/a")
        await page.get_by_role("button", name="Load this spool").click()
        await page.locator("#loaded-on", has_text=f"{node.id}/a").wait_for()
        assert (await ok(http, "GET", f"/api/v1/spools/{spool_id}"))["loaded_on"] == f"{node.id}/a"
        async with page.expect_download() as got:
            await page.get_by_label(f"spool {spool_id} label 50×30 mm PNG").click()
        label = tmp_path / "label.png"
        await (await got.value).save_as(label)
        assert qr_codes(label) == [f"{base}/panel/#/spool/{spool_id}"]
        await page.screenshot(path=str(ARTIFACTS / "panel-spool.png"), full_page=True)

        await page.goto(f"{base}/panel/#/quotes")
        row = page.locator(f"tr[data-quote='{quote['id']}']")
        await row.wait_for()
        assert quote["number"] in await row.inner_text()
        async with page.expect_download() as got:
            await row.get_by_label(f"Download quote {quote['number']}").click()
        download = await got.value
        assert download.suggested_filename == f"{quote['number']}.pdf"
        pdf = tmp_path / "quote.pdf"
        await download.save_as(pdf)
        text = pdf_text(pdf.read_bytes(), tmp_path)
        assert quote["number"] in text and "Zoë Müller GmbH" in text
        # "Show PDF" is the same document, inline, with the panel's session.
        href = await row.get_by_label(f"Show quote {quote['number']}").get_attribute("href")
        shown = await context.request.get(f"{base}{href}")
        assert shown.headers["content-type"] == "application/pdf"
        assert shown.headers["content-disposition"].startswith("inline")
        await page.screenshot(path=str(ARTIFACTS / "panel-quotes.png"), full_page=True)

        await page.goto(f"{base}/panel/#/alerts")
        alert_row = page.locator("tr[data-alert]").first
        alert_id = await alert_row.get_attribute("data-alert")
        await page.get_by_role("button", name=f"Acknowledge alert {alert_id}").click()
        await page.locator(f"tr[data-alert='{alert_id}']", has_text="admin").wait_for()
        acked = (await ok(http, "GET", "/api/v1/alerts/history"))["items"][0]
        assert acked["acknowledged_by"] == "admin" and acked["acknowledged_at"]
        await browser.close()
