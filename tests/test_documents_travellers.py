"""Job travellers and production sheets: printed after real (scripted) prints, read back with
pdftotext, their QR codes scanned with zbar."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.documents.travellers import duration

from .hubkit import Farm, isolated_farm  # noqa: F401 - fixtures
from .paperkit import pdf_pages, pdf_text, qr_codes
from .test_farm_queue import GCODE, ok, run_to_end, spool

pytestmark = [pytest.mark.integration]

PUBLIC = "https://farm.example"


async def test_production_sheet_lists_jobs_printers_spools_times_and_signed_stages(isolated_farm: Farm,
                                                                                 tmp_path: Path) -> None:
    hub = await isolated_farm.hub(public_url=PUBLIC)
    http = isolated_farm.http(hub)
    node = await isolated_farm.node("a")
    sha = await http.upload(GCODE, "part.gcode")
    petg = await spool(http, "PETG", "#FF8000", 1000)
    await ok(http, "POST", f"/api/v1/devices/{node.id}/a/spool", json={"spool_id": petg})
    order = await ok(http, "POST", "/api/v1/orders", 201, json={
        "customer": "Brauerei Übersee", "reference": "PO-17", "stages": ["support_removal", "qc"],
        "items": [{"file_sha256": sha, "copies": 2, "material": "PETG"}]})
    jobs = order["items"][0]["jobs"]
    for _ in jobs:
        await run_to_end(node, await node.command(), extruded_mm=1000.0)
    for job in jobs:
        await http.wait_state(job, "completed")
    await ok(http, "POST", f"/api/v1/orders/{order['id']}/stages/support_removal", json={"notes": "clean"})
    estimate = (await ok(http, "GET", f"/api/v1/files/{sha}/analysis"))["estimate"]["total_s"]

    status, pdf = await http.call("GET", f"/api/v1/orders/{order['id']}/sheet")
    assert status == 200 and pdf.startswith(b"%PDF")
    text = pdf_text(pdf, tmp_path)
    for expected in (f"order #{order['id']}", "Brauerei Übersee", "PO-17", f"#{jobs[0]}", f"#{jobs[1]}",
                     f"{node.id}/a", f"spool #{petg} PETG #FF8000", "1 h 00 min", duration(estimate), "completed",
                     "support removal", "qc", "test-admin"):
        assert expected in text, (expected, text)
    assert text.count("☒") == 1 and text.count("☐") == 1  # one stage signed, one box still empty
    [page] = pdf_pages(pdf, tmp_path, name="sheet")
    assert qr_codes(page) == [f"{PUBLIC}/panel/#/order/{order['id']}"]

    status, traveller = await http.call("GET", f"/api/v1/jobs/{jobs[0]}/traveller", params={"download": "1"})
    assert status == 200
    text = pdf_text(traveller, tmp_path, "traveller.pdf")
    assert f"Job traveller #{jobs[0]}" in text and f"Order #{order['id']} Brauerei Übersee" in text
    assert "part.gcode" in text and f"{node.id}/a" in text
    [page] = pdf_pages(traveller, tmp_path, name="traveller")
    assert qr_codes(page) == [f"{PUBLIC}/panel/#/job/{jobs[0]}"]
    assert (await http.call("GET", "/api/v1/jobs/9999/traveller"))[0] == 404
