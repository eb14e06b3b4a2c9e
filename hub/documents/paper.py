"""What every PDF of the farm shares: fonts that carry any customer's name, the letterhead, money and dates.

reportlab draws the PDFs: it is pure Python with no system libraries (WeasyPrint
needs Pango), it has been maintained since 2000, and its platypus layer flows
tables over pages, which a quote with many lines needs.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Flowable, Image, Paragraph, Table, TableStyle

from .config import DocumentsConfig

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")


def _fonts() -> tuple[str, str]:
    """DejaVu (Debian's fonts-dejavu-core) covers accents, Greek and Cyrillic; Helvetica is the fallback."""
    try:
        pdfmetrics.getFont("FarmSans")
        return "FarmSans", "FarmSans-Bold"
    except KeyError:
        pass
    regular, bold = DEJAVU / "DejaVuSans.ttf", DEJAVU / "DejaVuSans-Bold.ttf"
    if not (regular.exists() and bold.exists()):
        return "Helvetica", "Helvetica-Bold"
    pdfmetrics.registerFont(TTFont("FarmSans", str(regular)))
    pdfmetrics.registerFont(TTFont("FarmSans-Bold", str(bold)))
    return "FarmSans", "FarmSans-Bold"


FONT, BOLD = _fonts()
_base = getSampleStyleSheet()
BODY = ParagraphStyle("body", parent=_base["Normal"], fontName=FONT, fontSize=9.5, leading=12)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=8, leading=10, textColor=colors.HexColor("#444444"))
TITLE = ParagraphStyle("title", parent=BODY, fontName=BOLD, fontSize=16, leading=20, spaceAfter=4)
HEADING = ParagraphStyle("heading", parent=BODY, fontName=BOLD, fontSize=11, leading=14, spaceBefore=8)
GRID = colors.HexColor("#9aa5b1")


def money(amount: float, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def day(value: dt.date | str) -> str:
    """ISO dates (2026-12-06): unambiguous in every country a customer may be in."""
    return value.isoformat() if isinstance(value, dt.date) else value[:10]


def text(value: object) -> Paragraph:
    return Paragraph(escape(str(value)), BODY)


def letterhead(config: DocumentsConfig, title: str, facts: list[tuple[str, str]]) -> list[Flowable]:
    """Logo and farm on the left, the document's title and key facts (number, dates) on the right."""
    left: list[Flowable] = []
    if config.logo_file is not None and config.logo_file.exists():
        logo = Image(str(config.logo_file))
        ratio = logo.imageHeight / max(logo.imageWidth, 1)
        logo.drawWidth, logo.drawHeight = 35 * mm, 35 * mm * ratio
        left.append(logo)
    left += [Paragraph(escape(config.farm_name), HEADING)] + [text(line) for line in config.address]
    right: list[Flowable] = [Paragraph(escape(title), TITLE)]
    right += [Paragraph(f"<b>{escape(k)}</b> {escape(v)}", BODY) for k, v in facts]
    table = Table([[left, right]], colWidths=[95 * mm, 80 * mm])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return [table]


def grid(rows: list[list[object]], widths: list[float], numeric_from: int = 99) -> Table:
    """A table with a header row; columns from ``numeric_from`` on are right-aligned."""
    table = Table(rows, colWidths=widths, repeatRows=1)
    table.setStyle(TableStyle([
        ("FONTNAME", (0, 0), (-1, 0), BOLD), ("FONTNAME", (0, 1), (-1, -1), FONT),
        ("FONTSIZE", (0, 0), (-1, -1), 9), ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black),
        ("LINEBELOW", (0, 1), (-1, -1), 0.3, GRID), ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("ALIGN", (numeric_from, 0), (-1, -1), "RIGHT"),
    ]))
    return table


def png_image(data: bytes, width: float) -> Image:
    picture = Image(io.BytesIO(data))
    ratio = picture.imageHeight / max(picture.imageWidth, 1)
    picture.drawWidth, picture.drawHeight = width, width * ratio
    return picture
