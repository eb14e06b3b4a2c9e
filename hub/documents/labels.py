"""Labels with a QR code: sizes, the one layout, and PDF or PNG output for one label or a batch.

Sizes: 62 mm continuous tape (Brother DK-22205: one 62 × 40 mm label after another),
single 50 × 30 mm labels, and A4 sheets of 3 × 8 (70 × 37 mm, Avery 3474-style).
segno encodes the QR codes: pure Python, no dependencies, maintained, and it
exposes the module matrix so the PDF gets a vector code rather than a bitmap.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from enum import StrEnum

from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from .painters import Painter, PdfPainter, PngPainter, fit, qr


class LabelSize(StrEnum):
    TAPE_62 = "62mm"
    SMALL = "50x30"
    A4_3X8 = "a4-3x8"


@dataclass(frozen=True)
class Sheet:
    page: tuple[float, float]  # mm
    label: tuple[float, float]
    columns: int = 1
    rows: int = 1

    @property
    def per_page(self) -> int:
        return self.columns * self.rows


SHEETS = {
    LabelSize.TAPE_62: Sheet(page=(62, 40), label=(62, 40)),
    LabelSize.SMALL: Sheet(page=(50, 30), label=(50, 30)),
    LabelSize.A4_3X8: Sheet(page=(210, 297), label=(70, 37.125), columns=3, rows=8),
}


@dataclass(frozen=True)
class Label:
    title: str
    lines: list[str]
    url: str
    swatch: str | None = None  # "#rrggbb": the filament's colour
    caption: str = field(default="")  # small print under the QR code, e.g. "scan to open"


def draw(p: Painter, label: Label, w: float, h: float) -> None:
    """QR code on the left, as tall as the label allows; title, swatch and lines on the right."""
    margin = max(1.5, h * 0.05)
    side = min(h - 2 * margin, w * 0.4)
    qr(p, label.url, margin, (h - side) / 2, side)
    x = side + 2 * margin
    room = w - x - margin
    title_pt = min(10.0, h * 0.28)
    line_pt = min(7.5, h * 0.2)
    y = margin + title_pt * 0.3528 + 0.5
    if label.swatch:
        swatch = title_pt * 0.3528
        p.rect(x, y - swatch, swatch, swatch, label.swatch, stroke=True)
        p.text(x + swatch + 1, y, fit(p, label.title, title_pt, room - swatch - 1, True), title_pt, True)
    else:
        p.text(x, y, fit(p, label.title, title_pt, room, True), title_pt, True)
    for line in label.lines:
        y += line_pt * 0.3528 * 1.35
        if y > h - margin:
            break
        p.text(x, y, fit(p, line, line_pt, room), line_pt)


def _slots(sheet: Sheet, count: int) -> list[tuple[int, float, float]]:
    """(page, x, y) of each label in mm: across, then down, then the next page."""
    w, h = sheet.label
    left = (sheet.page[0] - sheet.columns * w) / 2
    top = (sheet.page[1] - sheet.rows * h) / 2
    return [(n // sheet.per_page, left + (n % sheet.columns) * w, top + (n % sheet.per_page) // sheet.columns * h)
            for n in range(count)]


def labels_pdf(labels: list[Label], size: LabelSize, title: str) -> bytes:
    sheet = SHEETS[size]
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(sheet.page[0] * mm, sheet.page[1] * mm))
    canvas.setTitle(title)
    painter = PdfPainter(canvas, sheet.page[1])
    page = 0
    for (on_page, x, y), label in zip(_slots(sheet, len(labels)), labels, strict=True):
        if on_page != page:
            canvas.showPage()
            page = on_page
        painter.origin = (x, y)
        draw(painter, label, *sheet.label)
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def labels_png(labels: list[Label], size: LabelSize) -> bytes:
    """Every page, one under the other: a strip of tape, or sheets stacked."""
    sheet = SHEETS[size]
    slots = _slots(sheet, len(labels))
    pages = (slots[-1][0] + 1) if slots else 1
    painter = PngPainter(sheet.page[0], sheet.page[1] * pages)
    for (on_page, x, y), label in zip(slots, labels, strict=True):
        painter.origin = (x, y + on_page * sheet.page[1])
        draw(painter, label, *sheet.label)
    return painter.png()

