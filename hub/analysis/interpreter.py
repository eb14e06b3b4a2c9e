"""G-code lines to machine moves: the state a firmware keeps (position, units, modes, tool).

Shared by the file analysis and the print-time estimator so both read a file
exactly the same way. Listeners receive every command and every straight move;
arcs arrive already cut into short segments.
"""

from __future__ import annotations

import math
import re
from typing import Protocol

INCH = 25.4
# A chord may sit this far inside the arc: well under a line width, as firmwares do.
ARC_TOLERANCE_MM = 0.01
ARC_MAX_SEGMENT_MM = 2.0

_WORD = re.compile(r"([A-Z])\s*([-+]?(?:\d+\.?\d*|\.\d+))")
_ONLY_WORDS = re.compile(r"(?:\s*[A-Z]\s*[-+]?(?:\d+\.?\d*|\.\d+))*\s*")
_EXTENDED_WORD = re.compile(r"([A-Z_]+)=([-+]?(?:\d+\.?\d*|\.\d+))")
_CODE = re.compile(r"([GMT])\s*(\d+)(?:\.\d+)?")

# Commands whose words anything here reads; others pass on by name only, so that
# free-form arguments (M862.3 P "MK3S", M117 text) are never mistaken for bad input.
WORD_CODES = frozenset({
    "G0", "G1", "G2", "G3", "G4", "G92", "M104", "M109", "M140", "M190", "M141", "M191",
    "M73", "M201", "M203", "M204", "M205", "M220", "M221", "M566",
})
FLAG_CODES = frozenset({"M220"})  # commands whose bare letters are switches


def parse_words(text: str, flags: bool = False) -> dict[str, float]:
    """``"X1.5 E.2"`` → ``{"X": 1.5, "E": 0.2}``; ``ValueError`` when a word does not read as a number.

    With ``flags`` a bare letter reads as 0 (``M220 B`` saves the speed factor); a move's bare
    ``Y`` stays malformed, never a move to zero.
    """
    words = {}
    for token in text.split():
        key = token[0]
        if "A" <= key <= "Z":
            if len(token) == 1 and flags:
                words[key] = 0.0
                continue
            try:
                value = float(token[1:])
            except ValueError:
                break
            if not -1e9 < value < 1e9:  # also false for NaN; no machine moves a kilometre
                raise ValueError(f"number out of range: {token!r}")
            words[key] = value
        else:
            break
    else:
        return words
    # Rarer spellings: "X 10", "G1X10Y20".
    if _ONLY_WORDS.fullmatch(text) is None:
        raise ValueError(f"unreadable G-code words {text.strip()[:40]!r}")
    return {k: float(v) for k, v in _WORD.findall(text)}


def parse_line(line: str) -> tuple[str, dict[str, float]] | None:
    """``"G1 X1.5 E.2 ; perimeter"`` → ``("G1", {"X": 1.5, "E": 0.2})``; ``None`` for blank or comment lines.

    Line numbers (``N12``) and checksums (``*71``) are dropped. Klipper-style
    extended commands come back as ``("SET_VELOCITY_LIMIT", {"ACCEL": 3000.0})``.
    Raises ``ValueError`` when a command this package acts on has unreadable words.
    """
    cut = line.find(";")
    if cut >= 0:
        line = line[:cut]
    line = line.strip()
    if not line:
        return None
    if line[0] in "Nn":
        parts = line.split(None, 1)
        if len(parts) < 2:
            return None
        line = parts[1]
    star = line.find("*")
    if star >= 0:
        line = line[:star]
    upper = line.upper()
    head = _CODE.match(upper)
    if head is None:
        name, _, rest = upper.partition(" ")
        if not name.isidentifier():
            return None
        return name, {k: float(v) for k, v in _EXTENDED_WORD.findall(rest)}
    code = head.group(1) + str(int(head.group(2)))
    if code == "G28":
        # Bare axis letters name the axes to home: "G28 X Y".
        return code, {c: 0.0 for c in upper[head.end():] if c in "XYZ"}
    if code not in WORD_CODES:
        return code, {}
    return code, parse_words(upper[head.end():], flags=code in FLAG_CODES)


class Move:
    """One straight segment in millimetres; ``de`` is filament pushed (negative: retraction)."""

    __slots__ = ("x", "y", "z", "dx", "dy", "dz", "de", "feed", "tool")

    def __init__(self, x: float, y: float, z: float, dx: float, dy: float, dz: float,
                 de: float, feed: float, tool: int) -> None:
        self.x, self.y, self.z = x, y, z  # start point
        self.dx, self.dy, self.dz, self.de = dx, dy, dz, de
        self.feed = feed  # commanded mm/s, before any M220 factor
        self.tool = tool


class Listener(Protocol):
    def command(self, code: str, words: dict[str, float]) -> None: ...

    def move(self, m: Move) -> None: ...


class Interpreter:
    """Positions are logical (after ``G92``), in mm; feed is kept in mm/s."""

    def __init__(self, listeners: list[Listener]) -> None:
        self.listeners = listeners
        self.pos = [0.0, 0.0, 0.0, 0.0]
        self.absolute = True
        self.absolute_e = True
        self.scale = 1.0
        self.feed = 25.0  # mm/s until the file sets one; firmwares boot with something similar
        self.tool = 0

    def feed_line(self, line: str) -> None:
        parsed = parse_line(line)
        if parsed is not None:
            self.execute(*parsed)

    def execute(self, code: str, words: dict[str, float]) -> None:
        if code == "G1" or code == "G0":
            self._emit(self._target(words))
            return
        if code == "G2" or code == "G3":
            self._arc(words, clockwise=code == "G2")
            return
        if code == "G92":
            self._set_position(words)
        elif code == "G90":
            self.absolute = self.absolute_e = True
        elif code == "G91":
            self.absolute = self.absolute_e = False
        elif code == "M82":
            self.absolute_e = True
        elif code == "M83":
            self.absolute_e = False
        elif code == "G20":
            self.scale = INCH
        elif code == "G21":
            self.scale = 1.0
        elif code == "G28":
            axes = [i for i, a in enumerate("XYZ") if a in words] or [0, 1, 2]
            for i in axes:
                self.pos[i] = 0.0
        elif code[0] == "T" and code[1:].isdigit():
            self.tool = int(code[1:])
        for listener in self.listeners:
            listener.command(code, words)

    def _target(self, words: dict[str, float]) -> list[float]:
        pos, s = self.pos, self.scale
        target = pos.copy()
        for i, axis in enumerate("XYZ"):
            v = words.get(axis)
            if v is not None:
                target[i] = v * s if self.absolute else pos[i] + v * s
        v = words.get("E")
        if v is not None:
            target[3] = v * s if self.absolute_e else pos[3] + v * s
        f = words.get("F")
        if f is not None and f > 0:
            self.feed = f * s / 60.0
        return target

    def _emit(self, target: list[float]) -> None:
        pos = self.pos
        dx, dy, dz, de = target[0] - pos[0], target[1] - pos[1], target[2] - pos[2], target[3] - pos[3]
        if dx or dy or dz or de:
            m = Move(pos[0], pos[1], pos[2], dx, dy, dz, de, self.feed, self.tool)
            for listener in self.listeners:
                listener.move(m)
        self.pos = target

    def _arc(self, words: dict[str, float], clockwise: bool) -> None:
        start = self.pos
        end = self._target(words)
        s = self.scale
        if "R" in words:
            center = _center_from_radius(start, end, words["R"] * s, clockwise)
            if center is None:
                self._emit(end)
                return
            cx, cy = center
        else:
            cx, cy = start[0] + words.get("I", 0.0) * s, start[1] + words.get("J", 0.0) * s
        r = math.hypot(start[0] - cx, start[1] - cy)
        a0 = math.atan2(start[1] - cy, start[0] - cx)
        a1 = math.atan2(end[1] - cy, end[0] - cx)
        sweep = a1 - a0
        if clockwise:
            sweep = sweep if sweep < 0 else sweep - 2 * math.pi
        else:
            sweep = sweep if sweep > 0 else sweep + 2 * math.pi
        if r < 1e-6:
            self._emit(end)
            return
        step = 2 * math.acos(max(-1.0, 1 - ARC_TOLERANCE_MM / r)) if r > ARC_TOLERANCE_MM else math.pi
        step = min(step, ARC_MAX_SEGMENT_MM / r)
        n = max(1, math.ceil(abs(sweep) / step))
        for k in range(1, n):
            f = k / n
            a = a0 + sweep * f
            self._emit([cx + r * math.cos(a), cy + r * math.sin(a),
                        start[2] + (end[2] - start[2]) * f, start[3] + (end[3] - start[3]) * f])
        self._emit(end)

    def _set_position(self, words: dict[str, float]) -> None:
        if not any(a in words for a in "XYZE"):
            self.pos = [0.0, 0.0, 0.0, 0.0]
            return
        for i, axis in enumerate("XYZE"):
            v = words.get(axis)
            if v is not None:
                self.pos[i] = v * self.scale


def _center_from_radius(start: list[float], end: list[float], r: float, clockwise: bool) -> tuple[float, float] | None:
    """A negative R asks for the long way round (more than 180°), as in Marlin and RRF."""
    dx, dy = end[0] - start[0], end[1] - start[1]
    chord = math.hypot(dx, dy)
    if chord == 0 or chord > 2 * abs(r) + 1e-9:
        return None
    h = math.sqrt(max(0.0, r * r - chord * chord / 4))
    mx, my = start[0] + dx / 2, start[1] + dy / 2
    # Centre to the left of the chord for a short counter-clockwise arc.
    sign = 1.0 if (r > 0) != clockwise else -1.0
    return mx - sign * h * dy / chord, my + sign * h * dx / chord
