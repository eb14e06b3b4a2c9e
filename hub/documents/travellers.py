"""Job travellers and production sheets: the paper that goes with the parts through the shop.

A sheet lists what to print, where, on which spool, how long it should take and
took, and the post-processing stages with a box for each sign-off; its QR code
opens the job's or the order's panel page.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer

from ..api import ApiProblem
from ..store import Store
from .config import DocumentsConfig
from .links import PanelLinks
from .painters import PdfPainter, qr
from .paper import HEADING, SMALL, grid, letterhead, text


class QrCode(Flowable):
    """A vector QR code ``side`` mm square, for a platypus story."""

    def __init__(self, url: str, side: float) -> None:
        super().__init__()
        self.url, self.side = url, side
        self.width = self.height = side * mm

    def draw(self) -> None:
        qr(PdfPainter(self.canv, self.side), self.url, 0, 0, self.side)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


@dataclass
class SheetJob:
    id: int
    name: str
    file: str
    state: str
    printer: str
    material: str
    spool: str
    estimate_s: float | None
    actual_s: float | None
    started_at: str | None
    finished_at: str | None


@dataclass
class Sheet:
    title: str
    url: str
    facts: list[tuple[str, str]]
    jobs: list[SheetJob]
    stages: list[str] = field(default_factory=list)
    signed: dict[str, tuple[str, str]] = field(default_factory=dict)  # stage → (by, at)
    notes: str | None = None


_JOBS = ("SELECT j.*, f.name AS file, r.material AS want_material, r.color AS want_color, u.spool_id AS used_spool,"
         " r.spool_id AS planned_spool, a.body AS analysis FROM jobs j JOIN files f ON f.sha256 = j.file_sha256"
         " LEFT JOIN job_requirements r ON r.job_id = j.id"
         " LEFT JOIN spool_usage u ON u.job_id = j.id AND u.attempt = j.attempt"
         " LEFT JOIN file_analyses a ON a.sha256 = j.file_sha256 AND a.ok = 1")


class Travellers:
    def __init__(self, store: Store, links: PanelLinks, config: DocumentsConfig) -> None:
        self.store = store
        self.links = links
        self.config = config

    def _job(self, row: dict[str, Any]) -> SheetJob:
        estimate = None
        if row["analysis"]:
            estimate = (json.loads(row["analysis"]).get("estimate") or {}).get("total_s")
        spool_id = row["used_spool"] or row["planned_spool"]
        if spool_id is None and row["node"]:
            loaded = self.store.one("SELECT id FROM spools WHERE node = ? AND device = ?", (row["node"], row["device"]))
            spool_id = loaded["id"] if loaded else None
        spool = "–"
        if spool_id is not None:
            s = self.store.one("SELECT s.id, s.lot_nr, f.material, f.color_hex FROM spools s JOIN filaments f"
                               " ON f.id = s.filament_id WHERE s.id = ?", (spool_id,))
            if s:
                colour = f"#{s['color_hex'].lstrip('#')}" if s["color_hex"] else ""
                spool = f"#{s['id']} {s['material']} {colour}" + (f" lot {s['lot_nr']}" if s["lot_nr"] else "")
        material = " ".join(x for x in (row["want_material"], row["want_color"]) if x) or "any"
        return SheetJob(id=row["id"], name=row["name"], file=row["file"], state=row["state"],
                        printer=f"{row['node']}/{row['device']}" if row["node"] else "not assigned yet",
                        material=material, spool=spool.strip(), estimate_s=estimate, actual_s=row["duration_s"],
                        started_at=row["started_at"], finished_at=row["finished_at"])

    def job(self, job_id: int) -> Sheet:
        row = self.store.one(_JOBS + " WHERE j.id = ?", (job_id,))
        if row is None:
            raise ApiProblem(404, "Job not found", f"no job {job_id}")
        sheet = Sheet(title=f"Job traveller #{job_id}", url=self.links.job(job_id),
                      facts=[("Job", row["name"]), ("Created", row["created_at"][:16].replace("T", " "))],
                      jobs=[self._job(row)])
        order = self.store.one("SELECT o.* FROM orders o JOIN order_items i ON i.order_id = o.id"
                               " JOIN job_requirements r ON r.order_item_id = i.id WHERE r.job_id = ?", (job_id,))
        if order:
            self._stages(sheet, order)
            sheet.facts.insert(0, ("Order", f"#{order['id']} {order['customer']}"))
        return sheet

    def order(self, order_id: int) -> Sheet:
        order = self.store.one("SELECT * FROM orders WHERE id = ?", (order_id,))
        if order is None:
            raise ApiProblem(404, "Order not found", f"no order {order_id}")
        rows = self.store.all(_JOBS + " JOIN order_items i ON i.id = r.order_item_id WHERE i.order_id = ?"
                                      " ORDER BY j.id", (order_id,))
        facts = [("Customer", order["customer"]), ("Created", order["created_at"][:10])]
        if order["reference"]:
            facts.insert(1, ("Reference", order["reference"]))
        if order["deadline"]:
            facts.append(("Deadline", order["deadline"][:16].replace("T", " ")))
        sheet = Sheet(title=f"Production sheet · order #{order_id}", url=self.links.order(order_id), facts=facts,
                      jobs=[self._job(r) for r in rows], notes=order["notes"])
        self._stages(sheet, order)
        return sheet

    def _stages(self, sheet: Sheet, order: dict[str, Any]) -> None:
        sheet.stages = json.loads(order["stages"])
        sheet.signed = {r["stage"]: (r["by"], r["at"]) for r in self.store.all(
            "SELECT stage, by, at FROM order_stages WHERE order_id = ?", (order["id"],))}


def sheet_pdf(sheet: Sheet, config: DocumentsConfig) -> bytes:
    story: list[Flowable] = letterhead(config, sheet.title, [(f"{k}", v) for k, v in sheet.facts])
    story += [Spacer(1, 4 * mm), QrCode(sheet.url, 30), Paragraph(sheet.url, SMALL), Spacer(1, 4 * mm)]
    rows: list[list[object]] = [["Job", "Part", "Printer", "Material / spool", "State", "Estimated", "Actual"]]
    for j in sheet.jobs:
        spool = Paragraph(escape(f"spool {j.spool}"), SMALL)
        rows.append([f"#{j.id}", text(j.file), text(j.printer), [text(j.material), spool], j.state,
                     duration(j.estimate_s), duration(j.actual_s)])
    story += [Paragraph("Parts", HEADING),
              grid(rows, [10 * mm, 26 * mm, 42 * mm, 44 * mm, 18 * mm, 20 * mm, 20 * mm], numeric_from=5)]
    if sheet.stages:
        rows = [["Stage", "Done", "By", "When"]]
        for stage in sheet.stages:
            by, at = sheet.signed.get(stage, ("", ""))
            rows.append([stage.replace("_", " "), "☒" if by else "☐", by, at[:16].replace("T", " ")])
        table = grid(rows, [60 * mm, 15 * mm, 50 * mm, 50 * mm])
        table.setStyle([("FONTSIZE", (1, 1), (1, -1), 16), ("ROWBACKGROUNDS", (0, 1), (-1, -1), [None]),
                        ("TOPPADDING", (0, 1), (-1, -1), 7), ("BOTTOMPADDING", (0, 1), (-1, -1), 7)])
        story += [Paragraph("Post-processing sign-off", HEADING), table]
    if sheet.notes:
        story += [Paragraph("Notes", HEADING), text(sheet.notes)]
    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=A4, title=sheet.title, author=config.farm_name, leftMargin=15 * mm,
                      rightMargin=15 * mm, topMargin=15 * mm, bottomMargin=15 * mm).build(story)
    return out.getvalue()
