"""Bambu Lab error codes in the printer's own words.

A report carries ``print_error`` (a 32-bit code, shown by Bambu Studio as
``0300 400C``) and ``hms`` entries (``attr``/``code`` pairs, shown as
``HMS_0300_0100_0001_0007``). The printer's screen and Bambu Studio show the
same code with a sentence from Bambu's published HMS lists; a farm operator
searches the wiki by the code, so the code always leads and the sentence
follows where we know it. The table holds the codes a farm meets every day;
any other code still surfaces, by its number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

CANCELLED_CODES = frozenset({0x0300400C, 0x0500400E})
"""``print_error`` values a printer reports when a person or a ``stop`` cancelled the print."""

# The words Bambu's firmware and Bambu Studio show for these print_error codes.
_PRINT_ERROR_WORDS: dict[int, str] = {
    0x03004000: "Z axis homing failed; the task has been stopped.",
    0x03004002: "Auto Bed Leveling failed; the task has been stopped.",
    0x03004005: "The hotend cooling fan speed is abnormal.",
    0x03004006: "The nozzle is clogged.",
    0x03004008: "The AMS failed to change filament.",
    0x03004009: "Homing XY axis failed.",
    0x0300400C: "The task was canceled.",
    0x0300400D: "Resume failed after power loss.",
    0x03008000: "Printing was paused for unknown reason.",
    0x03008001: "Printing paused due to the pause command added to the printing file.",
    0x03008003: "Spaghetti defects were detected by the AI Print Monitoring.",
    0x03008008: "Nozzle temperature malfunction",
    0x03008009: "Heatbed temperature malfunction",
    0x0300800E: "The print file is not available. Please check to see if the storage media has been removed.",
    0x0300800F: "The door seems to be open, so printing was paused.",
    0x03008013: "Printing was paused by the user.",
    0x03008015: "The filament on external spool has run out; please load new filament.",
    0x03008016: "The nozzle is clogged with filament.",
    0x03008017: "Foreign objects detected on heatbed.",
    0x05004002: "Unsupported print file path or name. Please resend the print job.",
    0x05004003: "Printing stopped because the printer was unable to parse the file. Please resend your print job.",
    0x05004004: "Device is busy and cannot start new task.",
    0x05004006: "There is not enough free storage space for the print job.",
    0x0500400C: "Please insert a MicroSD card and restart the print job.",
    0x0500400E: "Printing was cancelled.",
}

HMS_FATAL, HMS_SERIOUS, HMS_COMMON, HMS_INFO = 1, 2, 3, 4
"""HMS severity: the high 16 bits of an entry's ``code``."""

_HMS_WORDS: dict[str, str] = {
    "0300_0100_0001_0007": "The heatbed temperature is abnormal; the sensor may have an open circuit.",
    "0300_0200_0001_0001": "The nozzle temperature is abnormal; the heater may be short-circuited.",
    "0700_2000_0002_0001": "AMS A Slot 1 filament has run out.",
    "0C00_0300_0003_0008": "Possible spaghetti defects were detected.",
}


def print_error_code(value: int) -> str:
    """``0x0300400C`` as Bambu writes it: ``0300_400C``."""
    return f"{value >> 16 & 0xFFFF:04X}_{value & 0xFFFF:04X}"


def describe_print_error(value: int) -> str:
    words = _PRINT_ERROR_WORDS.get(value)
    code = print_error_code(value)
    return f"{code}: {words}" if words else f"{code}: printer error (see the Bambu Lab wiki for this code)"


def hms_code(attr: int, code: int) -> str:
    return f"{attr >> 16 & 0xFFFF:04X}_{attr & 0xFFFF:04X}_{code >> 16 & 0xFFFF:04X}_{code & 0xFFFF:04X}"


def hms_entries(raw: object) -> list[tuple[int, str]]:
    """``(severity, "HMS_…: words")`` for each well-formed entry of a report's ``hms`` list."""
    if not isinstance(raw, Iterable) or isinstance(raw, (str, bytes, Mapping)):
        return []
    entries: list[tuple[int, str]] = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        attr, code = item.get("attr"), item.get("code")
        if not isinstance(attr, int) or not isinstance(code, int):
            continue
        name = hms_code(attr, code)
        words = _HMS_WORDS.get(name)
        entries.append((code >> 16 & 0xFFFF, f"HMS_{name}: {words}" if words else f"HMS_{name}"))
    return entries
