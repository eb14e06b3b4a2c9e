"""Parsing numbers that arrive as text in paths, forms and events."""

from __future__ import annotations

# SQLite's INTEGER is 64-bit signed: a number outside it names no row, and binding it raises OverflowError.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def ascii_int(raw: str, *, signed: bool = False) -> int | None:
    """``raw`` as an int, or None.

    ASCII digits only: str.isdigit() accepts '³', which int() refuses. None too for
    a number SQLite cannot hold, so no id or frame number from a request reaches
    the store out of range.
    """
    digits = raw[1:] if signed and raw.startswith("-") else raw
    if not digits or not (digits.isascii() and digits.isdigit()):
        return None
    value = int(raw)
    return value if _INT64_MIN <= value <= _INT64_MAX else None
