"""The demo farm's parts: ring towers of several sizes, each G-code file carrying a PNG thumbnail
the way PrusaSlicer embeds one (``; thumbnail begin WxH LEN`` and base64 lines), so the hub and the
panel's farm grid show a picture of what each printer is making."""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass

from .sample_gcode import ring_tower

THUMB = 48


def png(width: int, height: int, pixel) -> bytes:  # type: ignore[no-untyped-def]
    """An RGBA PNG from ``pixel(x, y) -> (r, g, b, a)``, written with zlib alone."""
    rows = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def ring_picture(colour: tuple[int, int, int], ratio: float, size: int = THUMB) -> bytes:
    """A ring seen from above, its hole ``ratio`` of its width."""
    c = (size - 1) / 2

    def pixel(x: int, y: int) -> tuple[int, int, int, int]:
        d = ((x - c) ** 2 + (y - c) ** 2) ** 0.5 / c
        if ratio <= d <= 0.95:
            shade = 0.75 + 0.25 * (1 - abs(d - (ratio + 0.95) / 2) * 4)
            return (int(colour[0] * shade), int(colour[1] * shade), int(colour[2] * shade), 255)
        return (0, 0, 0, 0)

    return png(size, size, pixel)


def with_thumbnail(gcode: str, picture: bytes, size: int = THUMB) -> str:
    text = base64.b64encode(picture).decode()
    block = [f"; thumbnail begin {size}x{size} {len(text)}"]
    block += [f"; {text[i:i + 78]}" for i in range(0, len(text), 78)]
    block.append("; thumbnail end")
    head, _, rest = gcode.partition("\n")
    return "\n".join([head, ";", *block, ";", rest])


@dataclass(frozen=True)
class Part:
    name: str
    diameter_mm: float
    height_mm: float
    colour: tuple[int, int, int]

    def gcode(self) -> str:
        body = ring_tower(name=self.name, diameter_mm=self.diameter_mm, height_mm=self.height_mm)
        return with_thumbnail(body, ring_picture(self.colour, ratio=0.5))


PARTS = (
    Part("cable ring", 16, 2.4, (220, 60, 40)),
    Part("spacer", 20, 3.0, (40, 110, 200)),
    Part("bushing", 24, 3.6, (60, 160, 70)),
    Part("knob base", 28, 2.0, (240, 150, 20)),
    Part("lens hood", 32, 2.8, (120, 120, 130)),
)
