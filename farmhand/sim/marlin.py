"""The pure parts of a Marlin-like firmware: line checking, heaters and motion timing.

No I/O here, so tests can drive a host engine against the very rules the
virtual printer applies on its pseudo-terminal.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import reduce
from operator import xor

ERR_LINE_NUMBER = "Line Number is not Last Line Number+1, Last Line: "
ERR_CHECKSUM = "checksum mismatch, Last Line: "
ERR_NO_CHECKSUM = "No Checksum with line number, Last Line: "
ERR_NO_LINE_NUMBER = "No Line Number with checksum, Last Line: "

_INT = re.compile(r"\s*([+-]?\d+)")
_LINE_PREFIX = re.compile(r"N[+-]?\d*\s*")


def strtol(text: str) -> int:
    """C's strtol(text, NULL, 10): the leading integer, 0 when there is none."""
    match = _INT.match(text)
    return int(match.group(1)) if match else 0


@dataclass(frozen=True, slots=True)
class Verdict:
    command: str = ""
    line: int | None = None
    """The line's number: the one it was accepted with, or the one a rejected line carried."""
    error: str | None = None
    """The error kind (one of the ERR_ strings) when the line was rejected."""


class LineChecker:
    """Marlin's checks on a received line (GCodeQueue::get_serial_commands), in Marlin's order.

    With ``checksums`` off it is Klipper's reading instead: a line number and a
    checksum, when present, are dropped unchecked.
    """

    def __init__(self, checksums: bool = True) -> None:
        self.last_line = 0
        self.checksums = checksums

    def check(self, raw: str) -> Verdict:
        text = raw.split(";", 1)[0].strip()
        if not self.checksums:
            prefix = _LINE_PREFIX.match(text) if text.startswith("N") else None
            return Verdict(command=text[prefix.end() if prefix else 0:].split("*", 1)[0].strip())
        if not text.startswith("N"):
            if "*" in text:
                return Verdict(error=ERR_NO_LINE_NUMBER)
            return Verdict(command=text)
        is_m110 = "M110" in text
        number_at = 0
        if is_m110:
            # Marlin takes the line number of M110 from its argument, when it has one.
            arg = text.find("N", text.find("M110") + 4)
            if arg >= 0:
                number_at = arg
        line = strtol(text[number_at + 1:])
        if line != self.last_line + 1 and not is_m110:
            return Verdict(line=line, error=ERR_LINE_NUMBER)
        star = text.rfind("*")
        if star < 0:
            return Verdict(line=line, error=ERR_NO_CHECKSUM)
        if strtol(text[star + 1:]) != reduce(xor, text[:star].encode("latin-1"), 0):
            return Verdict(line=line, error=ERR_CHECKSUM)
        self.last_line = line
        prefix = _LINE_PREFIX.match(text)
        return Verdict(command=text[prefix.end() if prefix else 0:star].strip(), line=line)

    def rejection(self, error: str) -> list[str]:
        """What Marlin prints for a rejected line: the error, the resend request, and its ok."""
        return [f"Error:{error}{self.last_line}", f"Resend: {self.last_line + 1}", "ok"]


class HeaterModel:
    """First-order heater: the temperature approaches its target (or the room's) exponentially."""

    def __init__(self, tau_s: float, ambient: float = 21.0, now: float = 0.0) -> None:
        self.tau_s = tau_s
        self.ambient = ambient
        self.actual = ambient
        self.target = 0.0
        self._t = now

    def _goal(self) -> float:
        return self.target if self.target > self.ambient else self.ambient

    def at(self, now: float) -> float:
        """The temperature at simulated time ``now`` (seconds)."""
        dt = now - self._t
        if dt > 0:
            goal = self._goal()
            self.actual = goal + (self.actual - goal) * math.exp(-dt / self.tau_s)
            self._t = now
        return self.actual

    def set_target(self, target: float, now: float) -> None:
        self.at(now)
        self.target = max(0.0, target)

    def time_to_reach(self, now: float, within: float = 1.0, cooling: bool = False) -> float:
        """Simulated seconds until the heater is within ``within`` °C of its target (0 if it is).

        Like M109 S, only heating is waited for unless ``cooling`` (M109 R).
        """
        actual = self.at(now)
        if not cooling and actual >= self.target - within:
            return 0.0
        gap = abs(actual - self._goal())
        return self.tau_s * math.log(gap / within) if gap > within else 0.0


@dataclass(slots=True)
class Motion:
    """Tool position and modes, enough to time moves."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    e: float = 0.0
    feed_mm_min: float = 1500.0
    relative: bool = False
    relative_e: bool = False

    def move(self, params: dict[str, float]) -> float:
        """Apply a G0/G1; return how long it takes in seconds."""
        if "F" in params and params["F"] > 0:
            self.feed_mm_min = params["F"]
        start = (self.x, self.y, self.z, self.e)
        for axis in "XYZ":
            if axis in params:
                value = params[axis]
                current = getattr(self, axis.lower())
                setattr(self, axis.lower(), current + value if self.relative else value)
        if "E" in params:
            self.e = self.e + params["E"] if (self.relative or self.relative_e) else params["E"]
        dist = math.dist(start[:3], (self.x, self.y, self.z)) or abs(self.e - start[3])
        return dist / (self.feed_mm_min / 60.0)

    def set_position(self, params: dict[str, float]) -> None:
        for axis in "XYZE":
            if axis in params:
                setattr(self, axis.lower(), params[axis])

    def report(self) -> str:
        return f"X:{self.x:.2f} Y:{self.y:.2f} Z:{self.z:.2f} E:{self.e:.2f} Count X:0 Y:0 Z:0"


def parse_params(command: str) -> tuple[str, dict[str, float]]:
    """``G1 X10 Y2.5 F3000`` → ("G1", {"X": 10.0, "Y": 2.5, "F": 3000.0}); text arguments are skipped."""
    words = command.split()
    if not words:
        return "", {}
    code = words[0].upper()
    params: dict[str, float] = {}
    for word in words[1:]:
        try:
            params[word[0].upper()] = float(word[1:]) if len(word) > 1 else 0.0
        except ValueError:
            continue
    return code, params
