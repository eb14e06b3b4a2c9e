"""Stored quotes over HTTP: gapless numbers under concurrent requests, the PDF a customer gets
(read back with pdftotext), validity expiry, and acceptance becoming an order at the quoted prices."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

import pytest
import trimesh
from PIL import Image

from .hubkit import Farm, isolated_farm  # noqa: F401 - fixtures
from .paperkit import pdf_image_count, pdf_text
from .test_farm_queue import GCODE, ok

pytestmark = [pytest.mark.integration]

CUSTOMER = "Zoë Müller Fahrzeugbau GmbH"


def _with_thumbnail(gcode: bytes) -> bytes:
    """The G-code with a PNG thumbnail embedded the way PrusaSlicer writes it."""
    png = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 160, 90)).save(png, "PNG")
    b64 = base64.b64encode(png.getvalue()).decode()
    lines = [f"; {b64[i:i + 78]}" for i in range(0, len(b64), 78)]
    block = "\n".join([f"; thumbnail begin 64x48 {len(b64)}", *lines, "; thumbnail end"]) + "\n"
    return block.encode() + gcode


async def _files(farm: Farm, tmp_path: Path, **documents: Any) -> tuple[Any, str, str]:
    logo = tmp_path / "logo.png"
    Image.new("RGB", (120, 40), (200, 60, 20)).save(logo)
    hub = await farm.hub(documents={"farm_name": "Tannhäuser Print Works", "address": ["Hafenstraße 3", "Bremen"],
                                    "logo_file": str(logo), "vat_pct": 19, **documents})
    http = farm.http(hub)
    gcode = await http.upload(_with_thumbnail(GCODE), "part.gcode")
    stl = io.BytesIO()
    trimesh.creation.box((20, 20, 20)).export(stl, file_type="stl")
    return http, gcode, await http.upload(stl.getvalue(), "bracket.stl")


def _draft(gcode: str, mesh: str, **extra: Any) -> dict[str, Any]:
    return {"customer": CUSTOMER, "customer_address": ["Am Deich 7", "28195 Bremen"], "reference": "PO-4711",
            "lines": [{"file_sha256": gcode, "copies": 3, "material": "PETG", "color": "#ff8000"},
                      {"file_sha256": mesh, "copies": 2, "machine_model": "prusa-mk3s",
                       "description": "Mounting bracket"}], **extra}


async def test_concurrent_quotes_are_numbered_without_gaps_and_refused_ones_take_no_number(
        isolated_farm: Farm, tmp_path: Path) -> None:
    http, gcode, mesh = await _files(isolated_farm, tmp_path)
    good = {"customer": "Acme", "lines": [{"file_sha256": gcode}]}
    bad = {"customer": "Acme", "lines": [{"file_sha256": gcode, "material": "UNOBTAINIUM"}]}
    answers = await asyncio.gather(*(http.call("POST", "/api/v1/quotes/drafts", json=bad if n % 4 == 3 else good)
                                     for n in range(24)))
    assert sorted(s for s, _ in answers) == [201] * 18 + [422] * 6
    year = dt.datetime.now(dt.UTC).year
    numbers = sorted(b["number"] for s, b in answers if s == 201)
    assert numbers == [f"Q-{year}-{n:04d}" for n in range(1, 19)]
    listed = await ok(http, "GET", "/api/v1/quotes")
    assert len(listed["items"]) == 18 and {q["status"] for q in listed["items"]} == {"draft"}


async def test_the_quote_pdf_names_the_farm_the_customer_and_every_price(isolated_farm: Farm, tmp_path: Path) -> None:
    http, gcode, mesh = await _files(isolated_farm, tmp_path)
    until = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=14)).isoformat()
    quote = await ok(http, "POST", "/api/v1/quotes/drafts", 201, json=_draft(
        gcode, mesh, valid_until=until, notes="Ships <fragile> & dry"))
    petg, bracket = quote["lines"]
    assert (petg["kind"], bracket["kind"]) == ("precise", "quick")
    assert petg["unit_price"] == pytest.approx(petg["total"] / 3, abs=0.01)
    assert quote["net"] == pytest.approx(petg["total"] + bracket["total"], abs=0.01)
    assert quote["vat"] == pytest.approx(quote["net"] * 0.19, abs=0.01)

    status, pdf = await http.call("GET", f"/api/v1/quotes/{quote['id']}/pdf")
    assert status == 200 and pdf.startswith(b"%PDF")
    text = pdf_text(pdf, tmp_path)
    for expected in (f"Quote {quote['number']}", "Tannhäuser Print Works", "Hafenstraße 3", CUSTOMER, "Am Deich 7",
                     "PO-4711", "part.gcode", "Mounting bracket", f"Valid until {until}", "Ships <fragile> & dry",
                     f"Date {quote['created_at'][:10]}", "VAT 19 %"):
        assert expected in text, (expected, text)
    money = lambda v: f"{v:,.2f} EUR"  # noqa: E731
    for amount in (petg["unit_price"], petg["total"], bracket["unit_price"], bracket["total"], quote["net"],
                   quote["vat"], quote["total"]):
        assert money(amount) in text, (money(amount), text)
    assert re.search(r"Mounting bracket[\s\S]*\b2\b", text)
    # The logo, and a picture of each part: the G-code's own thumbnail, and a drawing of the mesh.
    assert pdf_image_count(pdf, tmp_path) == 3
    status, _ = await http.call("GET", "/api/v1/quotes/999/pdf")
    assert status == 404


async def test_accepting_makes_an_order_with_the_quoted_lines_and_prices(isolated_farm: Farm, tmp_path: Path) -> None:
    http, gcode, mesh = await _files(isolated_farm, tmp_path)
    quote = await ok(http, "POST", "/api/v1/quotes/drafts", 201, json={**_draft(gcode, mesh), "lines": [
        {"file_sha256": gcode, "copies": 3, "material": "PETG", "color": "#ff8000"}], "stages": ["qc", "packed"]})
    sent = await ok(http, "POST", f"/api/v1/quotes/{quote['id']}/send")
    assert sent["status"] == "sent" and sent["sent_at"]
    # The farm changes its prices after quoting: the order keeps what the customer was quoted.
    model = await ok(http, "GET", "/api/v1/cost-model")
    await ok(http, "PUT", "/api/v1/cost-model", json={**model, "markup_pct": 300})
    accepted = await ok(http, "POST", f"/api/v1/quotes/{quote['id']}/accept")
    assert accepted["status"] == "accepted" and accepted["order_id"]
    order = await ok(http, "GET", f"/api/v1/orders/{accepted['order_id']}")
    assert order["customer"] == CUSTOMER and order["reference"] == quote["number"]
    assert order["stages"] == ["qc", "packed"]
    [item] = order["items"]
    line = quote["lines"][0]
    assert (item["file_sha256"], item["copies"], item["material"], item["color"]) == (gcode, 3, "PETG", "#ff8000")
    assert item["quoted_price"] == pytest.approx(line["total"]) and item["quoted_cost"] == pytest.approx(line["cost"])
    assert order["cost"]["price"] == pytest.approx(quote["net"]) and len(item["jobs"]) == 3
    again = await http.call("POST", f"/api/v1/quotes/{quote['id']}/accept")
    assert again[0] == 409 and "accepted" in again[1]["detail"]
    assert len((await ok(http, "GET", "/api/v1/orders"))["items"]) == 1

    other = await ok(http, "POST", "/api/v1/quotes/drafts", 201, json=_draft(gcode, mesh))
    assert (await ok(http, "POST", f"/api/v1/quotes/{other['id']}/reject"))["status"] == "rejected"
    assert (await http.call("POST", f"/api/v1/quotes/{other['id']}/accept"))[0] == 409


async def test_an_open_quote_past_its_validity_expires_and_cannot_be_accepted(isolated_farm: Farm,
                                                                              tmp_path: Path) -> None:
    http, gcode, mesh = await _files(isolated_farm, tmp_path, validity_days=10)
    quote = await ok(http, "POST", "/api/v1/quotes/drafts", 201, json=_draft(gcode, mesh))
    today = dt.datetime.now(dt.UTC).date()
    assert quote["valid_until"] == (today + dt.timedelta(days=10)).isoformat()
    past = await http.call("POST", "/api/v1/quotes/drafts", json=_draft(gcode, mesh, valid_until="2001-01-01"))
    assert past[0] == 422 and "past" in past[1]["detail"]

    hub = isolated_farm.hubs[-1]
    assert hub.store is not None
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    hub.store.db.execute("UPDATE quotes SET valid_until = ? WHERE id = ?", (yesterday, quote["id"]))
    expired = await ok(http, "GET", f"/api/v1/quotes/{quote['id']}")
    assert expired["status"] == "expired" and expired["decided_at"]
    refused = await http.call("POST", f"/api/v1/quotes/{quote['id']}/accept")
    assert refused[0] == 409 and "expired" in refused[1]["detail"]
    assert (await ok(http, "GET", "/api/v1/quotes", params={"status": "expired"}))["items"][0]["id"] == quote["id"]
