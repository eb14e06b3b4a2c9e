"""Classifying what firmware prints, one line at a time, into a ``Reply``.

Marlin, Prusa and Klipper mostly agree: ``ok`` ends every command, ``Resend:``
asks for a line again, ``Error:`` (Klipper ``!!``) reports problems, and
temperature reports look like ``T:210.0 /215.0 B:60.1 /60.0 @:127 B@:0``.
``classify`` is on the streaming hot path, so the common ``ok`` returns first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from protocol.messages import Heater


class Kind(StrEnum):
    OK = "ok"
    RESEND = "resend"
    ERROR = "error"
    BUSY = "busy"
    WAIT = "wait"
    START = "start"
    TEMPERATURE = "temperature"
    ACTION = "action"
    FIRMWARE = "firmware"
    CAPABILITY = "capability"
    ECHO = "echo"
    OTHER = "other"


# Errors after which the firmware stops (Marlin's kill(), thermal protection, Klipper's shutdown).
FATAL_MARKERS: tuple[str, ...] = (
    "kill() called",
    "printer halted",
    "thermal runaway",
    "mintemp",
    "maxtemp",
    "heating failed",
    "system stopped",
    "printer stopped",
    "shutdown",
)

# Errors that a Resend follows: the line was rejected, not executed.
LINE_ERROR_MARKERS: tuple[str, ...] = (
    "checksum mismatch",
    "line number",
    "no checksum",
    "format error",
    "expected line",
    "wrong checksum",
    "missing checksum",
)


@dataclass(frozen=True, slots=True)
class Reply:
    kind: Kind
    text: str
    line: int | None = None
    """RESEND: the line asked for; OK with ADVANCED_OK: the last line the firmware took."""
    planner_free: int | None = None
    buffer_free: int | None = None
    temperatures: dict[str, Heater] | None = None
    message: str = ""
    """ERROR: the firmware's own words; ACTION: the action's arguments; BUSY: the reason."""
    name: str = ""
    """ACTION: the action; CAPABILITY: the capability."""
    enabled: bool = False
    fatal: bool = False
    line_error: bool = False
    fields: dict[str, str] | None = None


OK = Reply(Kind.OK, "ok")

_ADVANCED_OK = re.compile(r"ok\s+N(\d+)\s+P(\d+)\s+B(\d+)")
_RESEND = re.compile(r"(?:resend|rs)[:\s]\s*N?:?\s*(\d+)", re.IGNORECASE)
_TEMP_START = re.compile(r"(?:ok\s+)?(?:T\d*|B|C):")
_TEMP = re.compile(r"(?<![\w@])(T\d*|B|C)\s*:\s*(-?\d+(?:\.\d*)?)(?:\s*/\s*(-?\d+(?:\.\d*)?))?")
_FIELD = re.compile(r"(?:^|\s)([A-Z][A-Z0-9_]+):")
_CAP = re.compile(r"Cap:([A-Za-z0-9_]+):\s*([01])")


def classify(line: str, fatal_markers: tuple[str, ...] = FATAL_MARKERS) -> Reply:
    text = line.strip()
    if text == "ok":
        return OK
    if text.startswith("ok"):
        return _ok(text)
    lower = text.lower()
    if lower.startswith(("resend", "rs ", "rs:")):
        match = _RESEND.match(text)
        if match:
            return Reply(Kind.RESEND, text, line=int(match.group(1)))
        return Reply(Kind.OTHER, text)
    if lower.startswith("error:") or text.startswith("!!"):
        return _error(text, fatal_markers)
    if _TEMP_START.match(text):
        return Reply(Kind.TEMPERATURE, text, temperatures=parse_temperatures(text))
    if "busy:" in lower[:12]:
        return Reply(Kind.BUSY, text, message=text.split("busy:", 1)[1].strip())
    if text.startswith("//"):
        return _action(text)
    if text.startswith("FIRMWARE_NAME:"):
        return Reply(Kind.FIRMWARE, text, fields=parse_fields(text))
    if text.startswith("Cap:"):
        match = _CAP.match(text)
        if match:
            return Reply(Kind.CAPABILITY, text, name=match.group(1).upper(), enabled=match.group(2) == "1")
    if text == "start":
        return Reply(Kind.START, text)
    if text == "wait":
        return Reply(Kind.WAIT, text)
    if lower.startswith("echo:"):
        return Reply(Kind.ECHO, text, message=text[5:].strip())
    return Reply(Kind.OTHER, text)


def _ok(text: str) -> Reply:
    advanced = _ADVANCED_OK.match(text)
    if advanced:
        return Reply(Kind.OK, text, line=int(advanced.group(1)), planner_free=int(advanced.group(2)),
                      buffer_free=int(advanced.group(3)))
    if ":" in text:
        temps = parse_temperatures(text)
        return Reply(Kind.OK, text, temperatures=temps or None)
    return Reply(Kind.OK, text)


def _error(text: str, fatal_markers: tuple[str, ...]) -> Reply:
    message = text[6:].strip() if text[:6].lower() == "error:" else text[2:].strip()
    lower = message.lower()
    line_error = any(m in lower for m in LINE_ERROR_MARKERS)
    fatal = not line_error and any(m in lower for m in fatal_markers)
    return Reply(Kind.ERROR, text, message=message, fatal=fatal, line_error=line_error)


def _action(text: str) -> Reply:
    body = text[2:].lstrip()
    if not body.startswith("action:"):
        return Reply(Kind.OTHER, text)
    name, _, args = body[7:].strip().partition(" ")
    return Reply(Kind.ACTION, text, name=name, message=args.strip())


def parse_temperatures(text: str) -> dict[str, Heater]:
    """``T:210.1 /215.0 B:60.0 /60.0 @:127`` → {"T0": Heater(210.1, 215.0), "B": Heater(60.0, 60.0)}.

    Marlin reports the active tool as ``T`` and, with several tools, each one as
    ``T0``, ``T1``…; a bare ``T`` is only kept (as ``T0``) when no numbered one is there.
    """
    found: dict[str, Heater] = {}
    bare: Heater | None = None
    for name, actual, target in _TEMP.findall(text):
        heater = Heater(actual=float(actual), target=float(target) if target else None)
        if name == "T":
            bare = heater
        else:
            found[name] = heater
    if bare is not None and not any(k.startswith("T") for k in found):
        found["T0"] = bare
    return found


def parse_fields(text: str) -> dict[str, str]:
    """``FIRMWARE_NAME:Marlin 2.1 (x) PROTOCOL_VERSION:1.0`` → {"FIRMWARE_NAME": "Marlin 2.1 (x)", ...}."""
    matches = list(_FIELD.finditer(text))
    fields: dict[str, str] = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        fields[match.group(1)] = text[match.end():end].strip()
    return fields
