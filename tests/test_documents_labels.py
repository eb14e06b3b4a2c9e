"""QR labels over HTTP: every size as PDF and PNG, read back with poppler and scanned with zbar;
the codes open the panel's stable page of the spool, printer or order item."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from .hubkit import Farm, isolated_farm  # noqa: F401 - fixtures
from .paperkit import pdf_pages, pdf_text, qr_codes
from .prerequisites import program
from .test_farm_queue import GCODE, ok

pytestmark = [pytest.mark.integration]

PUBLIC = "https://farm.example:8443"


async def _spools(http: Any) -> list[int]:
    vendor = await ok(http, "POST", "/api/v1/vendors", 201, json={"name": "Prusament"})
    ids = []
    for n, (material, colour) in enumerate([("PETG", "#FF8000"), ("PLA", "#1A1A1A"), ("ASA", "#FFFFFF")]):
        filament = await ok(http, "POST", "/api/v1/filaments", 201, json={
            "vendor_id": vendor["id"], "material": material, "color_hex": colour, "density": 1.27, "weight": 1000})
        ids.append((await ok(http, "POST", "/api/v1/spools", 201, json={
            "filament_id": filament["id"], "initial_weight": 1000, "used_weight": 188 + n,
            "lot_nr": f"L-22{n}"}))["id"])
    return ids


def _page_size_mm(pdf: bytes, tmp: Path) -> tuple[float, float]:
    path = tmp / "size.pdf"
    path.write_bytes(pdf)
    info = subprocess.run([program("pdfinfo"), str(path)], check=True, capture_output=True, text=True).stdout
    line = next(x for x in info.splitlines() if x.startswith("Page size:"))
    w, _, h = line.split(":")[1].split()[:3]
    return round(float(w) / 72 * 25.4, 1), round(float(h) / 72 * 25.4, 1)


async def test_spool_labels_in_every_size_scan_to_the_spool_page(isolated_farm: Farm, tmp_path: Path) -> None:
    hub = await isolated_farm.hub(public_url=PUBLIC)
    http = isolated_farm.http(hub)
    ids = await _spools(http)
    urls = [f"{PUBLIC}/panel/#/spool/{i}" for i in ids]

    status, sheet = await http.call("GET", "/api/v1/labels/spools", params={"size": "a4-3x8"})
    assert status == 200 and sheet.startswith(b"%PDF")
    assert _page_size_mm(sheet, tmp_path) == (210.0, 297.0)
    [page] = pdf_pages(sheet, tmp_path, name="sheet")
    assert sorted(qr_codes(page)) == sorted(urls)
    text = pdf_text(sheet, tmp_path)
    for i, n in zip(ids, range(3), strict=True):
        assert f"Spool #{i}" in text and f"{1000 - 188 - n} g left of 1000 g" in text and f"Lot L-22{n}" in text
    assert "PETG #FF8000" in text and "Prusament" in text

    for size, mm in (("62mm", (62.0, 40.0)), ("50x30", (50.0, 30.0))):
        status, pdf = await http.call("GET", f"/api/v1/labels/spools/{ids[0]}", params={"size": size})
        assert status == 200 and _page_size_mm(pdf, tmp_path) == mm
        [page] = pdf_pages(pdf, tmp_path, name=f"one-{size}")
        assert qr_codes(page) == [urls[0]]
        status, png = await http.call("GET", f"/api/v1/labels/spools/{ids[0]}", params={"size": size,
                                                                                          "format": "png"})
        assert status == 200 and png.startswith(b"\x89PNG")
        (tmp_path / f"{size}.png").write_bytes(png)
        assert qr_codes(tmp_path / f"{size}.png") == [urls[0]]

    # The tape is one label after another: three spools, three codes in one PNG strip.
    status, strip = await http.call("GET", "/api/v1/labels/spools", params={"format": "png"})
    (tmp_path / "strip.png").write_bytes(strip)
    assert sorted(qr_codes(tmp_path / "strip.png")) == sorted(urls)

    bad = await http.call("GET", "/api/v1/labels/spools", params={"size": "A0"})
    assert bad[0] == 422 and "size" in bad[1]["detail"]
    assert (await http.call("GET", "/api/v1/labels/spools/999"))[0] == 404
    # The address on the label is the panel's own page.
    status, page_html = await http.call("GET", "/panel/")
    assert status == 200 and b"<html" in page_html.lower()


async def test_order_box_labels_count_copies_and_printer_labels_open_the_device(isolated_farm: Farm,
                                                                               tmp_path: Path) -> None:
    hub = await isolated_farm.hub(public_url=PUBLIC)
    http = isolated_farm.http(hub)
    node = await isolated_farm.node("mk4-left", model="prusa-mk4")
    sha = await http.upload(GCODE, "hinge.gcode")
    order = await ok(http, "POST", "/api/v1/orders", 201, json={"customer": "Ölmühle Krefeld", "reference": "PO-88",
                                                                "items": [{"file_sha256": sha, "copies": 2}]})
    status, pdf = await http.call("GET", f"/api/v1/labels/orders/{order['id']}", params={"size": "a4-3x8"})
    assert status == 200
    text = pdf_text(pdf, tmp_path)
    assert "Ölmühle Krefeld" in text and "copy 1 of 2" in text and "copy 2 of 2" in text and "hinge.gcode" in text
    item = order["items"][0]["id"]
    [page] = pdf_pages(pdf, tmp_path, name="order")
    assert qr_codes(page) == [f"{PUBLIC}/panel/#/order/{order['id']}/item/{item}"] * 2

    status, png = await http.call("GET", f"/api/v1/labels/devices/{node.id}/mk4-left", params={"format": "png"})
    assert status == 200
    (tmp_path / "printer.png").write_bytes(png)
    assert qr_codes(tmp_path / "printer.png") == [f"{PUBLIC}/panel/#/device/{node.id}/mk4-left"]
    status, every = await http.call("GET", "/api/v1/labels/devices")
    assert status == 200 and "mk4-left" in pdf_text(every, tmp_path)
