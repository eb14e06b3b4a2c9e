"""Every panel page in real headless Chromium at a desktop's and a phone's size: it renders, nothing
overflows the viewport, the console stays clean; and the forms create and edit their resources, with the
API's validation errors shown next to the field they name."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from farmhand.sample_gcode import ring_tower

from .authkit import ADMIN_PASSWORD
from .conftest import PrivateMosquitto
from .farm import OnePrinterFarm
from .hubkit import Farm, eventually, isolated_farm  # noqa: F401 - fixtures
from .test_farm_queue import ok, run_to_end, spool
from .test_panel_browser import ARGS, ARTIFACTS, CHROMIUM, async_playwright, needs_chromium

pytestmark = pytest.mark.integration

PAGES = ["grid", "dashboard", "jobs", "upload", "nodes", "stock", "profiles", "orders", "render", "list/alerts",
         "settings", "quotes", "alerts", "webhooks"]
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
# How far the page reaches past the viewport's right edge, in CSS pixels (0 when it fits).
OVERFLOW = "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth"


async def logged_in(browser, base: str, size: tuple[int, int], user: tuple[str, str] = ("admin", ADMIN_PASSWORD),  # type: ignore[no-untyped-def]
                    **options: str):
    """A page of its own (``options``: Playwright's, e.g. timezone_id), logged in as ``user``; and its errors."""
    page = await browser.new_page(viewport={"width": size[0], "height": size[1]}, **options)
    await page.goto(f"{base}/panel/")
    await page.get_by_label("User name").fill(user[0])
    await page.get_by_label("Password").fill(user[1])
    await page.get_by_role("button", name="Log in").click()
    await page.locator("#grid[data-total]").wait_for(state="attached")  # empty (no printers yet): no height
    # From here on (before logging in, the session probe's 401 is expected): errors, and a refused
    # form's 4xx, which the form shows by its field and Chromium logs anyway, kept apart.
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource: the server responded with a status of 4")
            else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


@needs_chromium
@pytest.mark.timeout(120)
@pytest.mark.parametrize("size", SIZES)
async def test_every_page_fits_the_screen_without_console_errors(isolated_farm: Farm, size: str) -> None:  # noqa: F811
    hub = await isolated_farm.hub()
    await isolated_farm.node("mk4", "mini")
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page, errors = await logged_in(browser, hub.http_url, SIZES[size])
        for name in PAGES:
            await page.goto(f"{hub.http_url}/panel/#/{name}")
            await page.locator("main h1").wait_for()
            await page.wait_for_load_state("networkidle")
            assert await page.evaluate(OVERFLOW) <= 0, f"{name} overflows at {size}"
        if size == "phone":
            # The navigation folds behind one button, and the grid's tiles stand in one column.
            nav = page.get_by_role("navigation", name="Main")
            assert not await nav.is_visible()
            await page.get_by_role("button", name="Menu").click()
            await nav.get_by_role("link", name="Farm").click()
            await nav.wait_for(state="hidden", timeout=5000)
            tiles = page.locator(".tile")
            await tiles.nth(1).wait_for()
            boxes = [await tiles.nth(i).bounding_box() for i in range(2)]
            assert boxes[0]["x"] == boxes[1]["x"] and boxes[0]["width"] > 300  # type: ignore[index]
            assert (await page.get_by_role("button", name="Menu").bounding_box())["height"] >= 44  # type: ignore[index]
        await page.screenshot(path=str(ARTIFACTS / f"panel-pages-{size}.png"))
        await browser.close()
    assert errors == []


async def refused_then_fixed(form, button: str, label: str, field: str, values: tuple[str, str],  # type: ignore[no-untyped-def]
                             says: str) -> None:
    """Submit a bad value, see the API's words next to its field, then submit the good one."""
    await form.get_by_label(label).fill(values[0])
    await form.get_by_role("button", name=button).click()
    await form.locator(f".field-error[data-for={field}]", has_text=says).wait_for()
    assert await form.get_by_label(label).get_attribute("aria-invalid") == "true"
    await form.get_by_label(label).fill(values[1])
    await form.get_by_role("button", name=button).click()


@needs_chromium
@pytest.mark.timeout(120)
async def test_forms_create_resources_and_show_api_errors_by_their_field(isolated_farm: Farm) -> None:  # noqa: F811
    hub = await isolated_farm.hub()
    printer = await isolated_farm.node("mk4")
    http = isolated_farm.http(hub)
    await http.upload(ring_tower(height_mm=0.6).encode(), name="bracket.gcode")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page, errors = await logged_in(browser, hub.http_url, SIZES["desktop"])
        base = hub.http_url

        await page.goto(f"{base}/panel/#/stock")
        material = page.get_by_role("form", name="New material")
        await material.get_by_role("button", name="Add material").click()  # no material type: the API refuses
        error = material.locator(".field-error[data-for=material]")
        await error.wait_for()
        assert "Field required" in await error.inner_text()
        assert await material.get_by_label("Material").get_attribute("aria-invalid") == "true"
        await material.get_by_label("Material").fill("PETG")
        await material.get_by_label("Name").fill("Signal Orange")
        await refused_then_fixed(material, "Add material", "Density (g/cm³)", "density", ("99", "1.27"),
                                 "less than or equal to 5")
        await page.locator("#filaments tr", has_text="Signal Orange").wait_for()

        spool = page.get_by_role("form", name="New spool")
        await spool.get_by_label("Already used (g)").fill("180")
        await spool.get_by_role("button", name="Add spool").click()
        await page.locator("#spools tr[data-spool] .left", has_text="820 g").wait_for()
        load = page.get_by_role("form", name="Load a spool")
        await load.get_by_label("Printer").select_option(f"{printer.id}/mk4")
        await load.get_by_role("button", name="Load").click()
        await page.locator("#spools tr[data-spool]", has_text=f"{printer.id}/mk4").wait_for()

        await page.goto(f"{base}/panel/#/profiles")
        profile = page.get_by_role("form", name="New profile")
        await profile.get_by_label("Settings").fill("bed_shape = 0x0,250x0,250x210,0x210\nmax_print_height = 220")
        await refused_then_fixed(profile, "Add profile", "Profile name", "name", ("Big Printer!", "big-printer"),
                                 "should match pattern")
        await page.locator("#profiles tr[data-profile='printer/big-printer']").wait_for()

        await page.goto(f"{base}/panel/#/orders")
        order = page.get_by_role("form", name="New order")
        await order.get_by_label("Customer").fill("Acme")
        await order.get_by_role("button", name="Take order").click()  # no part chosen
        await order.locator(".field-error[data-for=file_sha256]").wait_for()
        await order.get_by_label("Part").select_option(label="bracket.gcode")
        await order.get_by_label("Copies").fill("2")
        await order.get_by_role("button", name="Take order").click()
        await page.locator("#orders tr[data-order]", has_text="Acme").wait_for()
        assert (await http.call("GET", "/api/v1/orders"))[1]["items"][0]["items"][0]["copies"] == 2

        await page.goto(f"{base}/panel/#/quotes")
        quote = page.get_by_role("form", name="New quote")
        await quote.get_by_label("Part").select_option(label="bracket.gcode")
        await quote.get_by_label("Copies").fill("3")
        await refused_then_fixed(quote, "Draft quote", "Customer", "customer", ("", "Acme"), "Field required")
        await page.locator("#quotes tr", has_text="Acme").wait_for()
        assert (await ok(http, "GET", "/api/v1/quotes"))["items"][0]["lines"][0]["copies"] == 3

        await page.goto(f"{base}/panel/#/settings")
        costs = page.get_by_role("form", name="Cost model")
        await refused_then_fixed(costs, "Save cost model", "Markup (%)", "markup_pct", ("5000", "45"), "1000")
        await page.locator("#toast", has_text="cost model saved").wait_for()
        assert (await http.call("GET", "/api/v1/cost-model"))[1]["markup_pct"] == 45

        user = page.get_by_role("form", name="New user")
        await user.get_by_label("User name").fill("olga")
        await refused_then_fixed(user, "Add user", "Password", "password", ("short", "a-long-enough-password"),
                                 "at least 10")
        await page.locator("#admin td", has_text="olga").wait_for()
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.get_by_role("button", name="Disable olga").click()
        await page.get_by_role("button", name="Enable olga").wait_for()
        (olga,) = [u for u in (await http.call("GET", "/api/v1/users"))[1]["items"] if u["username"] == "olga"]
        assert olga["disabled_at"] is not None, "disabled from the panel"
        await page.get_by_role("button", name="Delete olga").click()
        await page.locator("#toast", has_text="olga deleted").wait_for()
        assert "olga" not in [u["username"] for u in (await http.call("GET", "/api/v1/users"))[1]["items"]]
        token = page.get_by_role("form", name="New API token")
        await token.get_by_label("Token name").fill("ci")
        await token.get_by_role("button", name="Create token").click()
        await page.locator("#new-token", has_text="token ci: fh_").wait_for()
        await browser.close()
    assert errors == []


@needs_chromium
@pytest.mark.timeout(120)
@pytest.mark.parametrize("size", SIZES)
async def test_edit_forms_change_resources_and_show_api_errors_by_their_field(isolated_farm: Farm,  # noqa: F811
                                                                              size: str) -> None:
    hub = await isolated_farm.hub()
    printer = await isolated_farm.node("mk4")
    http = isolated_farm.http(hub)
    sha = await http.upload(ring_tower(height_mm=0.6).encode(), name="bracket.gcode")
    spool_id = await spool(http, "PLA", "#000000", 1000)
    material = (await ok(http, "GET", f"/api/v1/spools/{spool_id}"))["filament"]
    order = await ok(http, "POST", "/api/v1/orders", 201, json={"customer": "Acme", "stages": ["qc"],
                                                                 "items": [{"file_sha256": sha}]})
    olga = await ok(http, "POST", "/api/v1/users", 201, json={"username": "olga", "password": "a-long-password",
                                                               "role": "operator"})
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page, errors = await logged_in(browser, hub.http_url, SIZES[size])
        base = hub.http_url

        async def edit(route: str, button: str, form: str):  # type: ignore[no-untyped-def]
            await page.goto(f"{base}/panel/#/{route}")
            await page.get_by_role("button", name=button, exact=True).click()
            return page.get_by_role("form", name=form)

        async def saved(what: str, path: str) -> Any:
            await page.locator("#toast", has_text=what).wait_for()
            return await ok(http, "GET", path)

        form = await edit("stock", f"Edit material {material['id']}", f"Edit material {material['id']}")
        await form.get_by_label("Name").fill("Jet Black")
        await refused_then_fixed(form, "Save", "Density (g/cm³)", "density", ("99", "1.3"), "less than or equal to 5")
        (changed,) = [f for f in (await saved("saved", "/api/v1/filaments"))["items"] if f["id"] == material["id"]]
        assert (changed["name"], changed["density"], changed["price"]) == ("Jet Black", 1.3, material["price"])

        form = await edit("stock", f"Edit spool {spool_id}", f"Edit spool {spool_id}")
        await form.get_by_label("Location").fill("shelf B")
        await refused_then_fixed(form, "Save", "Already used (g)", "used_weight", ("-5", "300"), "greater than or equal")
        changed = await saved(f"spool {spool_id} saved", f"/api/v1/spools/{spool_id}")
        assert (changed["used_weight"], changed["location"], changed["initial_weight"]) == (300, "shelf B", 1000)

        form = await edit("orders", f"Edit order {order['id']}", f"Edit order {order['id']}")
        await form.get_by_label("Reference").fill("PO-9")
        await refused_then_fixed(form, "Save", "Stages after printing", "stages", ("qc, qc", "qc, packed"), "twice")
        changed = await saved(f"order {order['id']} saved", f"/api/v1/orders/{order['id']}")
        assert (changed["reference"], changed["stages"], changed["customer"]) == ("PO-9", ["qc", "packed"], "Acme")
        # Printed: its stages are signed off one after the other (the second once the order is post-processing).
        await run_to_end(printer, await printer.command())

        async def printed() -> bool:
            return (await ok(http, "GET", f"/api/v1/orders/{order['id']}"))["status"] == "printed"
        await eventually(printed, "the order to be printed")
        await page.reload()
        for stage in ("qc", "packed"):
            await page.get_by_role("button", name=f"Sign off {stage} for order {order['id']}").click()
            await page.locator("#toast", has_text=f"{stage} signed off").wait_for()
        assert (await ok(http, "GET", f"/api/v1/orders/{order['id']}"))["status"] == "done"

        await page.goto(f"{base}/panel/#/device/{printer.id}/mk4")
        form = page.get_by_role("form", name="Printer profile")
        await form.get_by_label("Tags").fill("fast, petg")
        await refused_then_fixed(form, "Save profile", "Nozzle (mm)", "nozzle_diameter", ("9", "0.6"),
                                 "less than or equal to 5")
        changed = await saved("profile saved", f"/api/v1/devices/{printer.id}/mk4/profile")
        assert (changed["nozzle_diameter"], changed["tags"], changed["auto_eject"]) == (0.6, ["fast", "petg"], False)

        form = await edit("settings", "Edit olga", "Edit user olga")
        await form.get_by_label("Role").select_option("viewer")
        await refused_then_fixed(form, "Save", "Password", "password", ("short", "another-long-password"), "at least 10")
        await page.locator("#toast", has_text="olga saved").wait_for()
        (changed,) = [u for u in (await ok(http, "GET", "/api/v1/users"))["items"] if u["id"] == olga["id"]]
        assert changed["role"] == "viewer"
        await browser.close()
    assert errors == []


@needs_chromium
@pytest.mark.timeout(120)
async def test_the_dashboard_charts_utilisation_and_filament_of_finished_prints(private_mosquitto: PrivateMosquitto,
                                                                                 tmp_path: Path) -> None:
    async with OnePrinterFarm(tmp_path, private_mosquitto.url, speed_factor=500) as farm:
        api = farm.api.http
        base = farm.hub.http_url
        async with api.post(f"{base}/api/v1/filaments", json={"material": "PETG", "density": 1.27, "weight": 1000}) as r:
            filament = await r.json()
        async with api.post(f"{base}/api/v1/spools", json={"filament_id": filament["id"]}) as r:
            spool_id = (await r.json())["id"]
        assert farm.agent_config is not None
        printer = f"{farm.agent_config.node_id}/mk3s-1"

        async def known() -> bool:
            async with api.post(f"{base}/api/v1/devices/{printer}/spool", json={"spool_id": spool_id}) as r:
                return r.status == 200
        await eventually(known, "the hub to know the printer")
        sha = await farm.api.upload(ring_tower(height_mm=0.6))
        for n in range(2):  # print jobs: the hub analyses the file, and books its filament when the job ends
            async with api.post(f"{base}/api/v1/print-jobs", json={"file_sha256": sha, "name": f"ring {n}"}) as r:
                job = (await r.json())["job"]
            assert (await farm.api.wait_job(job["id"], {"completed", "failed"}))["state"] == "completed"
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page, errors = await logged_in(browser, base, SIZES["desktop"])
            await page.goto(f"{base}/panel/#/dashboard")
            # Each chart has a series with a value in the interval the prints ran in, and its axis its unit.
            use = page.locator("#use-chart[data-series=farm]:not([data-points='0'])")
            filament_used = page.locator("#material-chart[data-series=PETG]:not([data-points='0'])")
            await use.wait_for()
            await filament_used.wait_for()
            assert "in %" in (await use.get_attribute("aria-label") or "")
            assert "in g" in (await filament_used.get_attribute("aria-label") or "")
            await page.locator("#printers tr", has_text="mk3s-1").get_by_text("2", exact=True).wait_for()
            await page.locator("#materials tr", has_text="PETG").wait_for()
            await page.screenshot(path=str(ARTIFACTS / "panel-dashboard.png"))
            await browser.close()
        assert errors == []
