"""The panel's webhooks page in real headless Chromium: a receiver that keeps failing leaves dead letters
that an admin sees (event, type, attempts, error, time in the admin's own zone) and replays once the
receiver is back; the list empties as they get through. Other users are not offered the page."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from .exportkit import Receiver, receiver  # noqa: F401 - fixture
from .hubkit import Farm, Http, eventually, isolated_farm  # noqa: F401 - fixture
from .test_export_webhooks import bodies, fast, subscribe
from .test_panel_browser import ARGS, ARTIFACTS, CHROMIUM, async_playwright, needs_chromium
from .test_panel_pages import SIZES, logged_in

pytestmark = pytest.mark.integration

TOKYO = timezone(timedelta(hours=9))  # the admin's zone (no daylight saving): unlike UTC's clock by 9 hours


async def dead_letters(http: Http, hook_id: int) -> list[dict[str, Any]]:
    status, body = await http.call("GET", f"/api/v1/webhooks/{hook_id}/dead-letters")
    assert status == 200, body
    return body["items"]


@needs_chromium
@pytest.mark.timeout(120)
async def test_dead_letters_show_on_the_panel_and_replay_empties_them(isolated_farm: Farm,  # noqa: F811
                                                                       receiver: Receiver) -> None:  # noqa: F811
    hub = await isolated_farm.hub(**fast(max_attempts=2))
    http = isolated_farm.http(hub)
    hook = await subscribe(http, receiver.url, event_types=["job.queued"])
    receiver.fail_next = 4  # both tries of both events
    sha = await http.upload(b"G28\n")
    jobs = [(await http.submit(sha))["id"] for _ in range(2)]

    async def both_dead() -> list[dict[str, Any]] | None:
        found = await dead_letters(http, hook["id"])
        return found if len(found) == 2 else None
    letters = await eventually(both_dead, "both events to be dead-lettered")
    status, operator = await http.call("POST", "/api/v1/users", json={
        "username": "olga", "password": "operator-password", "role": "operator"})
    assert status == 201, operator
    ARTIFACTS.mkdir(exist_ok=True)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page, errors = await logged_in(browser, hub.http_url, SIZES["desktop"], timezone_id="Asia/Tokyo",
                                       locale="en-GB")
        await page.get_by_role("navigation", name="Main").get_by_role("link", name="Webhooks").click()
        section = page.get_by_role("region", name=f"Webhook {hook['id']}")
        rows = section.locator("tr[data-event]")
        await rows.nth(1).wait_for()
        assert await section.locator(".dead-count").inner_text() == "2 dead letters"
        for row, letter in zip([rows.nth(0), rows.nth(1)], letters, strict=True):
            cells = await row.locator("td").all_inner_texts()
            failed = datetime.fromisoformat(letter["failed_at"])
            assert cells[:4] == [str(letter["event_id"]), "job.queued", "2", "HTTP 500"]
            assert failed.astimezone(TOKYO).strftime("%H:%M") in cells[4]
            assert failed.astimezone(timezone.utc).strftime("%H:%M") not in cells[4]
        first = letters[0]["event_id"]
        assert await section.get_by_label(f"Replay webhook {hook['id']} from event").input_value() == str(first)
        await page.screenshot(path=str(ARTIFACTS / "panel-webhooks.png"), full_page=True)

        receiver.requests.clear()  # the receiver is back: it takes what comes now
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await section.get_by_role("button", name=f"Replay webhook {hook['id']}").click()
        await section.locator(".dead-count", has_text="0 dead letters").wait_for()
        assert await rows.count() == 0
        assert [b["payload"]["job_id"] for b in bodies(receiver)] == jobs  # both delivered, in order
        assert await dead_letters(http, hook["id"]) == []

        # Anyone else is neither offered the page nor the button.
        other, other_errors = await logged_in(browser, hub.http_url, SIZES["desktop"],
                                              user=("olga", "operator-password"))
        nav = other.get_by_role("navigation", name="Main")
        await nav.get_by_role("link", name="Settings").wait_for()
        assert await nav.get_by_role("link", name="Webhooks").count() == 0
        await other.goto(f"{hub.http_url}/panel/#/webhooks")
        await other.get_by_text("Webhooks are for admins").wait_for()
        assert await other.get_by_role("button", name="Replay").count() == 0
        await browser.close()
    assert errors == [] and other_errors == []
