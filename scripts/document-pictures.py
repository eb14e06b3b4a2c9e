"""Render the README's pictures of the farm's paper: a quote and an A4 sheet of spool labels.

Both are drawn by the hub's own code (hub/documents) from sample records, then turned into
PNG by poppler's pdftoppm, exactly as a printed page looks.

    .venv/bin/python scripts/document-pictures.py [OUT_DIR]   # default: docs/pictures
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
from pathlib import Path

import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.costing import Line  # noqa: E402
from hub.documents.config import DocumentsConfig  # noqa: E402
from hub.documents.labels import Label, LabelSize, labels_pdf  # noqa: E402
from hub.documents.links import PanelLinks  # noqa: E402
from hub.documents.quote_pdf import quote_pdf  # noqa: E402
from hub.documents.schemas import Quote, QuoteLine  # noqa: E402
from hub.documents.thumbnails import mesh_view  # noqa: E402

CONFIG = DocumentsConfig(farm_name="Tannhäuser Print Works", address=["Hafenstraße 3", "28217 Bremen"], vat_pct=19)
LINKS = PanelLinks(lambda: "https://farm.example")


def _line(position: int, sha: str, description: str, copies: int, material: str, grams: float, hours: float,
          total: float) -> QuoteLine:
    return QuoteLine(position=position, file_sha256=sha, description=description, copies=copies, material=material,
                     color=None, machine_model="prusa-mk4", quality="0.20mm", kind="precise", grams=grams,
                     hours=hours, unit_price=round(total / copies, 2), total=total, cost=round(total / 1.3, 2),
                     breakdown=[Line(item="material", detail="", amount=0.0)])


def sample_quote() -> Quote:
    lines = [_line(1, "a" * 64, "Mounting bracket", 12, "PETG", 12 * 38.5, 12 * 1.9, 86.40),
             _line(2, "b" * 64, "Cable clip", 50, "PLA", 50 * 3.1, 50 * 0.2, 41.50)]
    net = sum(x.total for x in lines)
    return Quote(id=7, number="Q-2026-0042", status="sent", customer="Zoë Müller Fahrzeugbau GmbH",
                 customer_address=["Am Deich 7", "28195 Bremen"], reference="PO-4711", notes=None, currency="EUR",
                 net=net, vat_pct=19, vat=round(net * 0.19, 2), total=round(net * 1.19, 2),
                 valid_until=dt.date(2026, 12, 31), stages=[], created_at="2026-12-01T09:00:00.000+00:00",
                 sent_at=None, decided_at=None, order_id=None, lines=lines)


def sample_labels() -> list[Label]:
    stock = [("PETG", "#FF8000", "Prusament"), ("PLA", "#1A1A1A", "Prusament"), ("ASA", "#E8E8E8", "Polymaker"),
             ("PLA", "#2060C0", "Fillamentum"), ("TPU", "#C03030", "Polymaker"), ("PETG", "#30A050", "Prusament")]
    return [Label(title=f"Spool #{n}", url=LINKS.spool(n), swatch=colour,
                  lines=[f"{material} {colour}", vendor, f"{1000 - 37 * n} g left of 1000 g", f"Lot L-{2200 + n}"])
            for n, (material, colour, vendor) in enumerate(stock * 4, start=1)]


def _png(pdf: bytes, out: Path, dpi: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "doc.pdf"
        src.write_bytes(pdf)
        subprocess.run(["pdftoppm", "-r", str(dpi), "-png", "-singlefile", "-f", "1", "-l", "1", str(src),
                        str(out.with_suffix(""))], check=True)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        bracket, clip = Path(tmp) / "bracket.stl", Path(tmp) / "clip.stl"
        trimesh.util.concatenate([trimesh.creation.box((40, 20, 5)),
                                  trimesh.creation.box((5, 20, 30)).apply_translation((17.5, 0, 15))]).export(bracket)
        trimesh.creation.annulus(6, 9, 8).export(clip)
        pictures = {"a" * 64: mesh_view(str(bracket), "bracket.stl"), "b" * 64: mesh_view(str(clip), "clip.stl")}
    _png(quote_pdf(sample_quote(), CONFIG, pictures), out / "quote.png", 70)
    _png(labels_pdf(sample_labels(), LabelSize.A4_3X8, "Spool labels"), out / "labels.png", 70)
    print(f"wrote {out / 'quote.png'} and {out / 'labels.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "docs" / "pictures")
