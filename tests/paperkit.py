"""Reading the hub's documents back as a person would: PDF text (poppler's pdftotext), page
images (pdftoppm), embedded pictures (pdfimages) and QR codes (zbar's zbarimg)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .prerequisites import program


def pdf_text(pdf: bytes, tmp: Path, name: str = "doc.pdf") -> str:
    path = tmp / name
    path.write_bytes(pdf)
    return subprocess.run([program("pdftotext"), "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def pdf_pages(pdf: bytes, tmp: Path, dpi: int = 200, name: str = "doc") -> list[Path]:
    """One PNG per page."""
    path = tmp / f"{name}.pdf"
    path.write_bytes(pdf)
    subprocess.run([program("pdftoppm"), "-r", str(dpi), "-png", str(path), str(tmp / name)], check=True)
    return sorted(tmp.glob(f"{name}-*.png"))


def pdf_image_count(pdf: bytes, tmp: Path) -> int:
    path = tmp / "images.pdf"
    path.write_bytes(pdf)
    listing = subprocess.run([program("pdfimages"), "-list", str(path)], check=True, capture_output=True,
                             text=True).stdout
    return len(listing.splitlines()) - 2  # two header lines


def qr_codes(png: Path) -> list[str]:
    """Every QR code zbar finds in the image, in the order it reports them."""
    done = subprocess.run([program("zbarimg"), "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", str(png)],
                          capture_output=True, text=True)
    assert done.returncode in (0, 4), done.stderr  # 4: no code found
    return [line for line in done.stdout.splitlines() if line]
