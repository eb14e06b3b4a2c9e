"""Parsing numbers that arrive as text in paths, forms and events."""

from __future__ import annotations


def ascii_int(raw: str, *, signed: bool = False) -> int | None:
    """``raw`` as an int, or None. ASCII digits only: str.isdigit() accepts '³', which int() refuses."""
    digits = raw[1:] if signed and raw.startswith("-") else raw
    if not digits or not (digits.isascii() and digits.isdigit()):
        return None
    return int(raw)
