"""A quote as the customer reads it: letterhead, each part with its picture, prices, validity and terms."""

from __future__ import annotations

import io
from xml.sax.saxutils import escape

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer

from .config import DocumentsConfig
from .paper import BOLD, HEADING, SMALL, day, grid, letterhead, money, png_image, text
from .schemas import Quote


def _hours(hours: float) -> str:
    whole = int(hours)
    return f"{whole} h {round((hours - whole) * 60):02d} min"


def quote_pdf(quote: Quote, config: DocumentsConfig, pictures: dict[str, bytes | None]) -> bytes:
    """``pictures``: PNG bytes by file sha256 (None: the line gets no picture)."""
    cur = quote.currency
    story: list[Flowable] = letterhead(config, f"Quote {quote.number}", [
        ("Date", day(quote.created_at)), ("Valid until", day(quote.valid_until)),
        *([("Your reference", quote.reference)] if quote.reference else [])])
    story += [Spacer(1, 6 * mm), Paragraph("For", HEADING), text(quote.customer)]
    story += [text(line) for line in quote.customer_address]
    rows: list[list[object]] = [["", "Part", "Qty", "Unit price", "Total"]]
    for line in quote.lines:
        picture = pictures.get(line.file_sha256)
        detail = (f"{line.material}{' ' + line.color if line.color else ''} · {line.grams / line.copies:.1f} g · "
                  f"{_hours(line.hours / line.copies)} each ({line.kind} estimate)")
        rows.append([png_image(picture, 22 * mm) if picture else "",
                     [text(line.description), Paragraph(escape(detail), SMALL)],
                     str(line.copies), money(line.unit_price, cur), money(line.total, cur)])
    rows += [["", "Net", "", "", money(quote.net, cur)],
             ["", f"VAT {quote.vat_pct:g} %", "", "", money(quote.vat, cur)],
             ["", "Total", "", "", money(quote.total, cur)]]
    table = grid(rows, [26 * mm, 74 * mm, 14 * mm, 30 * mm, 31 * mm], numeric_from=2)
    table.setStyle([("FONTNAME", (1, -1), (-1, -1), BOLD)])
    story += [Spacer(1, 6 * mm), table, Spacer(1, 6 * mm)]
    if quote.notes:
        story += [Paragraph("Notes", HEADING), text(quote.notes)]
    story += [Paragraph("Terms", HEADING), text(config.terms),
              Paragraph(f"This quote is valid until {day(quote.valid_until)}. Prices in {cur}.", SMALL)]
    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=A4, title=f"Quote {quote.number}", author=config.farm_name,
                      leftMargin=17 * mm, rightMargin=17 * mm, topMargin=15 * mm, bottomMargin=15 * mm).build(story)
    return out.getvalue()
