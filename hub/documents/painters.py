"""One label layout, two ways to paint it: into a PDF (vector) and into a PNG (300 dpi).

A layout speaks millimetres from the label's top-left corner; each painter turns
that into its own units, so a label looks the same on paper and on screen.
"""

from __future__ import annotations

import io
from typing import Protocol

import segno
from PIL import Image, ImageDraw, ImageFont
from reportlab.lib.colors import HexColor
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen.canvas import Canvas

from .paper import DEJAVU, BOLD, FONT

PNG_DPI = 300


class Painter(Protocol):
    def rect(self, x: float, y: float, w: float, h: float, fill: str, stroke: bool = False) -> None: ...
    def text(self, x: float, y: float, s: str, size: float, bold: bool = False) -> None: ...
    def width(self, s: str, size: float, bold: bool = False) -> float: ...


def qr(painter: Painter, url: str, x: float, y: float, side: float) -> None:
    """A QR code (segno encodes it) as dark runs of modules, a two-module quiet zone included in ``side``."""
    code = segno.make(url, error="m")
    matrix = [list(row) for row in code.matrix_iter(scale=1, border=2)]
    module = side / len(matrix)
    for r, row in enumerate(matrix):
        c = 0
        while c < len(row):
            if row[c]:
                start = c
                while c < len(row) and row[c]:
                    c += 1
                painter.rect(x + start * module, y + r * module, (c - start) * module, module, "#000000")
            else:
                c += 1


def fit(painter: Painter, s: str, size: float, width: float, bold: bool = False) -> str:
    """``s`` cut with an ellipsis until it fits ``width`` mm."""
    if painter.width(s, size, bold) <= width:
        return s
    while s and painter.width(s + "…", size, bold) > width:
        s = s[:-1]
    return s + "…"


class PdfPainter:
    """Paints on a reportlab canvas; ``origin`` is the label's top-left corner in mm from the page's."""

    def __init__(self, canvas: Canvas, page_height: float) -> None:
        self.canvas = canvas
        self.page_height = page_height
        self.origin = (0.0, 0.0)

    def _xy(self, x: float, y: float) -> tuple[float, float]:
        return (self.origin[0] + x) * mm, (self.page_height - self.origin[1] - y) * mm

    def rect(self, x: float, y: float, w: float, h: float, fill: str, stroke: bool = False) -> None:
        px, py = self._xy(x, y + h)
        self.canvas.setFillColor(HexColor(fill))
        self.canvas.setStrokeColor(HexColor("#000000"))
        self.canvas.setLineWidth(0.3)
        self.canvas.rect(px, py, w * mm, h * mm, stroke=int(stroke), fill=1)

    def text(self, x: float, y: float, s: str, size: float, bold: bool = False) -> None:
        """``y``: the text's baseline."""
        self.canvas.setFillColor(HexColor("#000000"))
        self.canvas.setFont(BOLD if bold else FONT, size)
        self.canvas.drawString(*self._xy(x, y), s)

    def width(self, s: str, size: float, bold: bool = False) -> float:
        return pdfmetrics.stringWidth(s, BOLD if bold else FONT, size) / mm


class PngPainter:
    def __init__(self, width_mm: float, height_mm: float, dpi: int = PNG_DPI) -> None:
        self.scale = dpi / 25.4
        self.image = Image.new("RGB", (round(width_mm * self.scale), round(height_mm * self.scale)), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.origin = (0.0, 0.0)
        self._fonts: dict[tuple[float, bool], ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}

    def _px(self, v: float) -> int:
        return round(v * self.scale)

    def _font(self, size: float, bold: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        key = (size, bold)
        if key not in self._fonts:
            px = size / 72 * 25.4 * self.scale
            path = DEJAVU / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
            self._fonts[key] = (ImageFont.truetype(str(path), round(px)) if path.exists()
                                else ImageFont.load_default(round(px)))
        return self._fonts[key]

    def rect(self, x: float, y: float, w: float, h: float, fill: str, stroke: bool = False) -> None:
        x0, y0 = self._px(self.origin[0] + x), self._px(self.origin[1] + y)
        x1, y1 = self._px(self.origin[0] + x + w), self._px(self.origin[1] + y + h)
        self.draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=fill, outline="#000000" if stroke else None)

    def text(self, x: float, y: float, s: str, size: float, bold: bool = False) -> None:
        self.draw.text((self._px(self.origin[0] + x), self._px(self.origin[1] + y)), s, fill="#000000",
                       font=self._font(size, bold), anchor="ls")

    def width(self, s: str, size: float, bold: bool = False) -> float:
        return self.draw.textlength(s, font=self._font(size, bold)) / self.scale

    def png(self) -> bytes:
        out = io.BytesIO()
        self.image.save(out, "PNG", dpi=(PNG_DPI, PNG_DPI))
        return out.getvalue()
