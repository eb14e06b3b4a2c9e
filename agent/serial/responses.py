"""Classifying what firmware prints, one line at a time, into a ``Reply``.

Marlin, Prusa, RepRapFirmware, Smoothieware, Repetier and Klipper mostly agree:
``ok`` ends every command, ``Resend:``/``rs`` asks for a line again, an error
prefix (``Error:``, ``!!``, ``error:``) reports problems, and temperature
reports look like ``T:210.0 /215.0 B:60.1 /60.0 @:127 B@:0``. What differs
(error prefixes, which errors stop the firmware, the shape of a temperature
report) comes from the firmware profile through a ``Dialect``.
``classify`` is on the streaming hot path, so the common ``ok`` returns first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from protocol.messages import Heater

if TYPE_CHECKING:
    from .profiles import FirmwareProfile


class Kind(StrEnum):
    OK = "ok"
    RESEND = "resend"
    SKIP = "skip"
    ERROR = "error"
    BUSY = "busy"
    WAIT = "wait"
    START = "start"
    TEMPERATURE = "temperature"
    ACTION = "action"
    FIRMWARE = "firmware"
    CAPABILITY = "capability"
    SD = "sd"
    ECHO = "echo"
    STATE = "state"
    OTHER = "other"


FirmwareState = Literal["halted", "restarting", "ready"]


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

# One heater of a report: T, T0…T7, B (bed), C (chamber), P (Prusa's probe), A (ambient), X (Buddy's heatbreak).
# The look-behind keeps power fields (@:, B@:) and words like "Count X:" out.
TEMPERATURE_PATTERN = (
    r"(?<![\w@])(?P<name>T\d?|B|C|P|A|X)\s*:\s*(?P<actual>-?\d+(?:\.\d*)?)"
    r"(?:\s*/\s*(?P<target>-?\d+(?:\.\d*)?))?"
)


@dataclass(frozen=True, slots=True)
class Reply:
    kind: Kind
    text: str
    line: int | None = None
    """RESEND/SKIP: the line asked for or skipped; OK: the line acknowledged (ADVANCED_OK, Repetier)."""
    planner_free: int | None = None
    buffer_free: int | None = None
    temperatures: dict[str, Heater] | None = None
    message: str = ""
    """ERROR: the firmware's own words; ACTION: the action's arguments; BUSY: the reason; SD: the detail."""
    name: str = ""
    """ACTION: the action; CAPABILITY: the capability; SD: what happened (see ``_SD``); STATE: the state."""
    enabled: bool = False
    fatal: bool = False
    line_error: bool = False
    fields: dict[str, str] | None = None


OK = Reply(Kind.OK, "ok")

_ADVANCED_OK = re.compile(r"ok\s+(?:N(\d+)\s+)?P(\d+)\s+B(\d+)")
_OK_LINE = re.compile(r"ok\s+N?(\d+)\s*$")
_RESEND = re.compile(r"(?:resend|rs)[:\s]\s*N?:?\s*(\d+)", re.IGNORECASE)
_SKIP = re.compile(r"skip\s+(\d+)", re.IGNORECASE)
_TEMP_START = re.compile(r"(?:ok\s+)?(?:T\d?|B|C):")
_FIELD = re.compile(r"(?:^|\s)([A-Z][A-Z0-9_-]+):")
_CAP = re.compile(r"Cap:([A-Za-z0-9_]+):\s*([01])")
# SD card replies (Marlin, Prusa, Repetier), matched on the start of the line.
_SD: tuple[tuple[str, str], ...] = (
    ("Begin file list", "list_begin"),
    ("End file list", "list_end"),
    ("File opened:", "opened"),
    ("File selected", "selected"),
    ("SD printing byte", "progress"),
    ("Not SD printing", "idle"),
    ("Done printing file", "done"),
    ("open failed", "open_failed"),
    ("echo:SD card ok", "card_ok"),
    ("echo:No SD card", "no_card"),
    ("echo:No media", "no_card"),
)


class Dialect:
    """The parts of replies that differ between firmwares, compiled once per profile."""

    def __init__(
        self,
        *,
        error_prefixes: tuple[str, ...] = ("Error:", "!!"),
        fatal_errors: tuple[str, ...] = FATAL_MARKERS,
        line_errors: tuple[str, ...] = LINE_ERROR_MARKERS,
        temperature_pattern: str = TEMPERATURE_PATTERN,
        refusals: tuple[str, ...] = (),
        state_lines: dict[str, FirmwareState] | None = None,
    ) -> None:
        self.error_prefixes = tuple(error_prefixes)
        self.refusals = tuple(refusals)
        self.state_lines = dict(state_lines or {})
        self._lower_prefixes = tuple(p.lower() for p in error_prefixes)
        self.fatal_errors = tuple(m.lower() for m in fatal_errors)
        self.line_errors = tuple(m.lower() for m in line_errors)
        self._temp = re.compile(temperature_pattern)

    @classmethod
    def from_profile(cls, profile: FirmwareProfile) -> Dialect:
        return cls(error_prefixes=tuple(profile.error_prefixes), fatal_errors=tuple(profile.fatal_errors),
                   line_errors=tuple(profile.line_errors), temperature_pattern=profile.temperature_pattern,
                   refusals=tuple(profile.refusals), state_lines=profile.state_lines)

    def classify(self, line: str) -> Reply:
        text = line.strip()
        if text == "ok":
            return OK
        if text.startswith("ok"):
            return self._ok(text)
        lower = text.lower()
        if lower.startswith(("resend", "rs ", "rs:")):
            match = _RESEND.match(text)
            if match:
                return Reply(Kind.RESEND, text, line=int(match.group(1)))
            return Reply(Kind.OTHER, text)
        if lower.startswith(self._lower_prefixes):
            return self._error(text, lower)
        if _TEMP_START.match(text):
            return Reply(Kind.TEMPERATURE, text, temperatures=self.temperatures(text))
        if "busy:" in lower[:12]:
            return Reply(Kind.BUSY, text, message=text.split(":", 2)[-1].strip() if lower.startswith("echo:")
                         else text.split("busy:", 1)[1].strip())
        if self.refusals and text.startswith(self.refusals):
            # A refusal of the command being answered; the firmware goes on (Klipper's unknown command).
            return Reply(Kind.ERROR, text, message=text.lstrip("/ "))
        state = self.state_lines.get(text)
        if state is not None:
            return Reply(Kind.STATE, text, name=state, message=text.lstrip("/ "))
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
        if lower.startswith("skip"):
            match = _SKIP.match(text)
            if match:
                return Reply(Kind.SKIP, text, line=int(match.group(1)))
        for prefix, name in _SD:
            if text.startswith(prefix):
                return Reply(Kind.SD, text, name=name, message=text[len(prefix):].strip())
        if lower.startswith("echo:"):
            return Reply(Kind.ECHO, text, message=text[5:].strip())
        return Reply(Kind.OTHER, text)

    def temperatures(self, text: str) -> dict[str, Heater]:
        """``T:210.1 /215.0 B:60.0 /60.0 @:127`` → {"T0": Heater(210.1, 215.0), "B": Heater(60.0, 60.0)}.

        Marlin reports the active tool as ``T`` and, with several tools, each one as
        ``T0``, ``T1``…; a bare ``T`` is only kept (as ``T0``) when no numbered one is there.
        """
        found: dict[str, Heater] = {}
        bare: Heater | None = None
        for match in self._temp.finditer(text):
            name, target = match.group("name"), match.group("target")
            heater = Heater(actual=float(match.group("actual")), target=float(target) if target else None)
            if name == "T":
                bare = heater
            else:
                found.setdefault(name, heater)
        if bare is not None and not any(k.startswith("T") for k in found):
            found["T0"] = bare
        return found

    def _ok(self, text: str) -> Reply:
        words = text.split()
        # ADVANCED_OK comes with every line streamed: read "ok N12 P15 B3" without a regex.
        if len(words) == 4 and words[1][:1] == "N" and words[2][:1] == "P" and words[3][:1] == "B":
            try:
                return Reply(Kind.OK, text, line=int(words[1][1:]), planner_free=int(words[2][1:]),
                             buffer_free=int(words[3][1:]))
            except ValueError:
                pass
        advanced = _ADVANCED_OK.match(text)
        if advanced:
            line = advanced.group(1)
            return Reply(Kind.OK, text, line=int(line) if line else None, planner_free=int(advanced.group(2)),
                          buffer_free=int(advanced.group(3)))
        numbered = _OK_LINE.match(text)
        if numbered:
            return Reply(Kind.OK, text, line=int(numbered.group(1)))
        if "FIRMWARE_NAME:" in text:
            # Klipper answers M115 on its ok line.
            return Reply(Kind.OK, text, fields=parse_fields(text[2:].strip()))
        if ":" in text:
            temps = self.temperatures(text)
            return Reply(Kind.OK, text, temperatures=temps or None)
        return Reply(Kind.OK, text)

    def _error(self, text: str, lower: str) -> Reply:
        prefix = next(p for p in self._lower_prefixes if lower.startswith(p))
        message = text[len(prefix):].strip()
        words = message.lower()
        line_error = any(m in words for m in self.line_errors)
        fatal = not line_error and any(m in words for m in self.fatal_errors)
        return Reply(Kind.ERROR, text, message=message or text, fatal=fatal, line_error=line_error)


def _action(text: str) -> Reply:
    body = text[2:].lstrip()
    if not body.startswith("action:"):
        return Reply(Kind.OTHER, text)
    name, _, args = body[7:].strip().partition(" ")
    return Reply(Kind.ACTION, text, name=name, message=args.strip())


def parse_fields(text: str) -> dict[str, str]:
    """``FIRMWARE_NAME:Marlin 2.1 (x) PROTOCOL_VERSION:1.0`` → {"FIRMWARE_NAME": "Marlin 2.1 (x)", ...}."""
    matches = list(_FIELD.finditer(text))
    fields: dict[str, str] = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        # Smoothieware separates its fields with commas as well as spaces.
        fields[match.group(1)] = text[match.end():end].strip().rstrip(",").strip()
    return fields


MARLIN = Dialect()


def classify(line: str, fatal_markers: tuple[str, ...] = FATAL_MARKERS) -> Reply:
    """Marlin's dialect, or Marlin's with other fatal words."""
    dialect = MARLIN if fatal_markers is FATAL_MARKERS else Dialect(fatal_errors=fatal_markers)
    return dialect.classify(line)


def parse_temperatures(text: str) -> dict[str, Heater]:
    return MARLIN.temperatures(text)
