"""Reports and lists as CSV or XLSX, streamed: ``GET /api/v1/exports/{name}.{csv|xlsx}``.

Lists are read in pages by id, so a year of jobs never sits in memory. CSV goes
out as the pages are read. An XLSX file is a zip finished only at the end, so
xlsxwriter writes it in constant-memory mode to a temporary file that is then
sent in chunks (xlsxwriter: maintained, fast, and its constant-memory mode keeps
one row in memory; openpyxl's write-only mode is slower for the same job).

Text cells that a spreadsheet would run as a formula (= + - @) are written as
text: a customer named "=HYPERLINK(…)" stays a name.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import xlsxwriter
from aiohttp import web

from ..api import ApiProblem
from ..openapi import Op
from ..order_schemas import Order
from ..reports import Period, Reports, period
from ..store import Store, timestamp

PAGE = 500
Rows = Iterator[list[list[Any]]]  # pages of rows
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _paged(store: Store, sql: str, params: tuple[Any, ...], shape: Callable[[dict[str, Any]], list[Any]]) -> Rows:
    """``sql`` selects ``t.id`` and has a ``{after}`` placeholder for ``AND t.id > ?``."""
    last = 0
    while True:
        rows = store.all(sql.format(after="t.id > ?") + f" ORDER BY t.id LIMIT {PAGE}", (*params, last))
        if not rows:
            return
        yield [shape(r) for r in rows]
        last = rows[-1]["id"]


def _safe_text(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA) else value


class Exports:
    LISTS = ("jobs", "spools", "orders")
    REPORTS = ("utilisation", "materials", "orders-report")

    def __init__(self, store: Store, reports: Reports, orders: Callable[[], list[Order]]) -> None:
        self.store = store
        self.reports = reports
        self.orders = orders

    def table(self, name: str, start: datetime, end: datetime) -> tuple[list[str], Rows]:
        lo, hi = timestamp(start), timestamp(end)
        if name == "jobs":
            return (["id", "name", "state", "file", "printer", "priority", "attempt", "created_at", "started_at",
                     "finished_at", "duration_s", "extruded_mm", "error"],
                    _paged(self.store, "SELECT t.*, f.name AS file FROM jobs t JOIN files f ON f.sha256 ="
                                       " t.file_sha256 WHERE t.created_at >= ? AND t.created_at < ? AND {after}",
                           (lo, hi), lambda r: [r["id"], r["name"], r["state"], r["file"],
                                                f"{r['node']}/{r['device']}" if r["node"] else None, r["priority"],
                                                r["attempt"], r["created_at"], r["started_at"], r["finished_at"],
                                                r["duration_s"], r["extruded_mm"], r["error"]]))
        if name == "spools":
            return (["id", "material", "color", "vendor", "filament", "initial_g", "used_g", "remaining_g", "lot",
                     "location", "loaded_on", "archived", "registered"],
                    _paged(self.store, "SELECT t.*, f.material, f.color_hex, f.name AS filament, v.name AS vendor"
                                       " FROM spools t JOIN filaments f ON f.id = t.filament_id LEFT JOIN vendors v"
                                       " ON v.id = f.vendor_id WHERE {after}", (),
                           lambda r: [r["id"], r["material"], r["color_hex"], r["vendor"], r["filament"],
                                      r["initial_weight"], round(r["used_weight"], 3),
                                      round(max(r["initial_weight"] - r["used_weight"], 0.0), 3), r["lot_nr"],
                                      r["location"], f"{r['node']}/{r['device']}" if r["node"] else None,
                                      bool(r["archived"]), r["registered"]]))
        if name == "orders":
            orders = [o for o in self.orders() if lo <= o.created_at < hi]
            return (["id", "customer", "reference", "status", "created_at", "deadline", "items", "copies", "currency",
                     "price", "cost", "margin"],
                    iter([[[o.id, o.customer, o.reference, o.status.value, o.created_at, o.deadline, len(o.items),
                            sum(i.copies for i in o.items), o.cost.currency, o.cost.price, o.cost.cost,
                            o.cost.margin] for o in orders]]))
        if name == "utilisation":
            u = self.reports.utilisation(start, end)
            return (["printer", "model", "jobs", "printing_hours", "period_hours", "utilisation"],
                    iter([[[p.device, p.model, p.jobs, p.printing_hours, p.period_hours, p.utilisation]
                           for p in u.printers]]))
        if name == "materials":
            m = self.reports.materials(start, end)
            return (["material", "color", "grams", "jobs"],
                    iter([[[x.material, x.color, x.grams, x.jobs] for x in m.materials]]))
        if name == "orders-report":
            r = self.reports.orders_report(start, end)
            rows = [[customer, s.count, r.currency, s.revenue, s.cost, s.margin] for customer, s in
                    r.by_customer.items()]
            rows.append(["(all customers)", r.total.count, r.currency, r.total.revenue, r.total.cost, r.total.margin])
            return ["customer", "orders", "currency", "revenue", "cost", "margin"], iter([rows])
        raise ApiProblem(404, "No such export", f"{name!r}: exports are {', '.join(self.LISTS + self.REPORTS)}")

    # ------------------------------------------------------------------ HTTP

    async def _csv(self, request: web.Request, columns: list[str], pages: Rows, file: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                               "Content-Disposition": f'attachment; filename="{file}"'})
        response.enable_chunked_encoding()
        await response.prepare(request)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")  # Excel opens UTF-8 (accents, €) correctly only with the BOM
        writer.writerow(columns)
        for page in pages:
            writer.writerows([_safe_text(v) for v in row] for row in page)
            await response.write(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
        await response.write(buffer.getvalue().encode())
        await response.write_eof()
        return response

    async def _xlsx(self, request: web.Request, columns: list[str], pages: Rows, file: str,
                    title: str) -> web.StreamResponse:
        fd, path = tempfile.mkstemp(prefix="farmhand-export-", suffix=".xlsx")
        os.close(fd)
        try:
            book = xlsxwriter.Workbook(path, {"constant_memory": True, "tmpdir": os.path.dirname(path)})
            sheet = book.add_worksheet(title[:31])
            bold = book.add_format({"bold": True})
            sheet.write_row(0, 0, columns, bold)
            sheet.freeze_panes(1, 0)
            n = 1
            for page in pages:
                for row in page:
                    for c, value in enumerate(row):
                        if isinstance(value, str):
                            sheet.write_string(n, c, value)  # never a formula, whatever it starts with
                        elif value is not None:
                            sheet.write(n, c, value)
                    n += 1
                await asyncio.sleep(0)  # let other requests in between pages
            await asyncio.to_thread(book.close)
            response = web.StreamResponse(headers={
                "Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "Content-Disposition": f'attachment; filename="{file}"', "Content-Length": str(os.path.getsize(path))})
            await response.prepare(request)
            with open(path, "rb") as fh:
                while chunk := fh.read(256 * 1024):
                    await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            os.unlink(path)

    async def export(self, request: web.Request) -> web.StreamResponse:
        name, fmt = request.match_info["name"], request.match_info["format"]
        if fmt not in ("csv", "xlsx"):
            raise ApiProblem(404, "No such export", f"format {fmt!r}: csv or xlsx")
        if name in self.LISTS and "from" not in request.query:
            start, end = datetime.fromisoformat("2000-01-01T00:00:00+00:00"), period(request)[1]  # lists: all
        else:
            start, end = period(request)
        columns, pages = self.table(name, start, end)
        file = f"{name}-{timestamp(start)[:10]}-{timestamp(end)[:10]}.{fmt}"
        if fmt == "csv":
            return await self._csv(request, columns, pages, file)
        return await self._xlsx(request, columns, pages, file, name)

    def ops(self) -> list[Op]:
        return [Op("GET", "/api/v1/exports/{name}.{format}", self.export, query=Period, response_type="text/csv",
                   tags=("reports",), summary="A report (utilisation, materials, orders-report) or list (jobs, spools,"
                                              " orders) as CSV or XLSX, streamed; lists default to everything")]
