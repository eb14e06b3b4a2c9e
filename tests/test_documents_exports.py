"""CSV and XLSX exports over HTTP: reports after real (scripted) prints, a list longer than one
page read in pages without a row lost or repeated, and spreadsheet formulas kept as text."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from hub.store import utcnow

from .hubkit import Farm, isolated_farm  # noqa: F401 - fixtures
from .test_farm_queue import GCODE, ok, run_to_end, spool

pytestmark = [pytest.mark.integration]

openpyxl = pytest.importorskip("openpyxl")

EVIL = '=HYPERLINK("http://evil.example","click")'


def _csv(body: bytes) -> list[list[str]]:
    text = body.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def _xlsx(body: bytes) -> list[list[Any]]:
    book = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
    return [list(row) for row in book.worksheets[0].iter_rows(values_only=True)]


async def test_reports_and_lists_export_as_csv_and_xlsx(isolated_farm: Farm) -> None:
    hub = await isolated_farm.hub()
    http = isolated_farm.http(hub)
    node = await isolated_farm.node("a")
    sha = await http.upload(GCODE, "part.gcode")
    petg = await spool(http, "PETG", "#FF8000", 1000)
    await ok(http, "POST", f"/api/v1/devices/{node.id}/a/spool", json={"spool_id": petg})
    order = await ok(http, "POST", "/api/v1/orders", 201, json={"customer": EVIL, "price": 99.5,
                                                                "items": [{"file_sha256": sha, "copies": 2}]})
    for job in order["items"][0]["jobs"]:
        await run_to_end(node, await node.command(), extruded_mm=1000.0)
        await http.wait_state(job, "completed")

    status, body = await http.call("GET", "/api/v1/exports/materials.csv")
    assert status == 200
    assert _csv(body) == [["material", "color", "grams", "jobs"], ["PETG", "FF8000", "6.109", "2"]]
    status, body = await http.call("GET", "/api/v1/exports/utilisation.xlsx")
    header, [printer] = _xlsx(body)[0], _xlsx(body)[1:]
    assert header[0] == "printer" and printer[0] == f"{node.id}/a" and printer[2] == 2

    status, body = await http.call("GET", "/api/v1/exports/orders.csv")
    [header, row] = _csv(body)
    assert dict(zip(header, row, strict=True))["customer"] == "'" + EVIL  # a text, not a formula, in a spreadsheet
    assert dict(zip(header, row, strict=True))["price"] == "99.5"
    status, body = await http.call("GET", "/api/v1/exports/orders-report.xlsx")
    rows = _xlsx(body)
    assert rows[1][0] == EVIL and rows[1][3] == 99.5 and rows[-1][0] == "(all customers)"
    book = openpyxl.load_workbook(io.BytesIO(body))
    assert book.worksheets[0]["A2"].data_type == "s"  # stored as a string, never as a formula

    status, body = await http.call("GET", "/api/v1/exports/spools.xlsx")
    [header, spool_row] = _xlsx(body)
    assert dict(zip(header, spool_row, strict=True))["remaining_g"] == pytest.approx(1000 - 6.109, abs=0.001)

    assert (await http.call("GET", "/api/v1/exports/nothing.csv"))[0] == 404
    assert (await http.call("GET", "/api/v1/exports/jobs.pdf"))[0] == 404
    assert (await http.call("GET", "/api/v1/exports/jobs.csv", params={"from": "yesterday"}))[0] == 422


async def test_a_long_list_streams_in_pages_without_losing_or_repeating_a_row(isolated_farm: Farm) -> None:
    hub = await isolated_farm.hub()
    http = isolated_farm.http(hub)
    sha = await http.upload(GCODE, "part.gcode")
    assert hub.store is not None
    with hub.store.transaction() as db:
        db.conn.executemany("INSERT INTO jobs (name, file_sha256, state, created_at) VALUES (?, ?, 'queued', ?)",
                       [(f"job {n}", sha, utcnow()) for n in range(1234)])
    async with http.session.get(f"{http.base}/api/v1/exports/jobs.csv") as r:
        assert r.status == 200 and r.headers["Transfer-Encoding"] == "chunked"
        assert "jobs-" in r.headers["Content-Disposition"]
        rows = _csv(await r.read())
    assert rows[0][:3] == ["id", "name", "state"]
    assert [int(x[0]) for x in rows[1:]] == list(range(1, 1235))
    status, body = await http.call("GET", "/api/v1/exports/jobs.xlsx")
    assert status == 200 and [r[0] for r in _xlsx(body)[1:]] == list(range(1, 1235))
    status, body = await http.call("GET", "/api/v1/exports/jobs.csv", params={"from": "2099-01-01T00:00:00Z",
                                                                              "to": "2099-02-01T00:00:00Z"})
    assert len(_csv(body)) == 1  # the header alone
