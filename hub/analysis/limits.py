"""The motion limits a firmware holds right now: the machine's defaults, then what the G-code sets.

Each firmware reads the same M-codes a little differently (units of M203,
the forms of M204, Klipper ignoring M205); those differences live here and
nowhere else.
"""

from __future__ import annotations

import math

from hub.analysis.declared import DeclaredMachine
from hub.analysis.machines import MachineModel

LIMIT_CODES = frozenset({"M201", "M203", "M204", "M205", "M566", "SET_VELOCITY_LIMIT"})


class FirmwareLimits:
    """Per-axis lists are X, Y, Z, E; speeds in mm/s, accelerations in mm/s²."""

    def __init__(self, machine: MachineModel) -> None:
        self.firmware = machine.firmware
        self.max_feed = [machine.max_feedrate.x, machine.max_feedrate.y, machine.max_feedrate.z, machine.max_feedrate.e]
        self.max_accel = [machine.max_acceleration.x, machine.max_acceleration.y,
                          machine.max_acceleration.z, machine.max_acceleration.e]
        self.jerk = [machine.jerk.x, machine.jerk.y, machine.jerk.z, machine.jerk.e]
        self.accel_print = machine.acceleration.print
        self.accel_retract = machine.acceleration.retract
        self.accel_travel = machine.acceleration.travel
        self.junction_deviation = machine.junction_deviation
        self.min_extruding_rate = machine.min_extruding_rate
        self.min_travel_rate = machine.min_travel_rate
        self.speed_factor = 1.0  # M220
        self.saved_speed_factor = 1.0
        self.extrude_factor = 1.0  # M221
        # A slicer's declared maximum accelerations also cap later M204 lines, as PrusaSlicer plans.
        self.print_cap: float | None = None
        self.travel_cap: float | None = None
        self.overridden: set[str] = set()  # limit commands the file itself issued

    def declare(self, d: DeclaredMachine) -> None:
        """Start from what the slicer declared instead of the machine model, where it declared anything."""
        for target, values in ((self.max_feed, d.max_feed), (self.max_accel, d.max_accel), (self.jerk, d.jerk)):
            for i, v in enumerate(values):
                if v is not None:
                    target[i] = v
        if d.accel_print is not None:
            self.accel_print = self.print_cap = d.accel_print
        if d.accel_travel is not None:
            self.accel_travel = self.travel_cap = d.accel_travel
        elif d.accel_print is not None:
            self.accel_travel = d.accel_print
        if d.accel_retract is not None:
            self.accel_retract = d.accel_retract
        if d.min_extruding_rate is not None:
            self.min_extruding_rate = d.min_extruding_rate
        if d.min_travel_rate is not None:
            self.min_travel_rate = d.min_travel_rate
        if self.firmware != "klipper" and any(j is not None for j in d.jerk):
            # The slicer estimated with classic jerk unless it declared a junction deviation.
            self.junction_deviation = d.junction_deviation

    def apply(self, code: str, words: dict[str, float]) -> None:
        if code in LIMIT_CODES:
            self.overridden.add(code)
        if code == "M201":
            self._axes(self.max_accel, words, 1.0)
        elif code == "M203":
            # RepRapFirmware takes mm/min here, Marlin and Klipper mm/s.
            self._axes(self.max_feed, words, 1 / 60 if self.firmware == "reprapfirmware" else 1.0)
        elif code == "M204":
            self._accelerations(words)
        elif code == "M205":
            self._m205(words)
        elif code == "M566":
            self._axes(self.jerk, words, 1 / 60)  # RepRapFirmware's jerk, mm/min
        elif code == "M220":
            self._feed_override(words)
        elif code == "M221":
            if "S" in words and "T" not in words:
                self.extrude_factor = words["S"] / 100.0
        elif code == "SET_VELOCITY_LIMIT":
            self._klipper(words)

    @staticmethod
    def _axes(target: list[float], words: dict[str, float], factor: float) -> None:
        for i, axis in enumerate("XYZE"):
            v = words.get(axis)
            if v is not None and v > 0:
                target[i] = v * factor

    def _set_all_accelerations(self, value: float) -> None:
        self.accel_print = self.accel_travel = self.accel_retract = value

    def _set_print(self, value: float) -> None:
        self.accel_print = min(value, self.print_cap) if self.print_cap else value

    def _set_travel(self, value: float) -> None:
        self.accel_travel = min(value, self.travel_cap) if self.travel_cap else value

    def _accelerations(self, words: dict[str, float]) -> None:
        # A zero acceleration would never move; firmwares refuse it, and so do we.
        words = {k: v for k, v in words.items() if v > 0}
        if self.firmware == "klipper":
            # Klipper has one acceleration: M204 S, or the smaller of P and T given together.
            value = words.get("S") or (min(words["P"], words["T"]) if "P" in words and "T" in words else None)
            if value:
                self._set_all_accelerations(value)
            return
        if "S" in words:
            # Legacy form (Marlin 1, Prusa MK3): S sets printing and travel, T retraction.
            self._set_print(words["S"])
            self._set_travel(words["S"])
            if "T" in words:
                self.accel_retract = words["T"]
            return
        if "P" in words:
            self._set_print(words["P"])
        if "R" in words:
            self.accel_retract = words["R"]
        if "T" in words:
            self._set_travel(words["T"])

    def _m205(self, words: dict[str, float]) -> None:
        if self.firmware == "klipper":
            return  # Klipper ignores M205: corners follow square_corner_velocity
        if "X" in words:
            self.jerk[0] = words["X"]
            if "Y" not in words:
                self.jerk[1] = words["X"]
        for i, axis in ((1, "Y"), (2, "Z"), (3, "E")):
            if axis in words:
                self.jerk[i] = words[axis]
        if "S" in words:
            self.min_extruding_rate = words["S"]
        if "T" in words:
            self.min_travel_rate = words["T"]
        if "J" in words:
            self.junction_deviation = words["J"] if words["J"] > 0 else None  # J0: back to jerk
        elif "X" in words or "Y" in words:
            self.junction_deviation = None  # setting jerk means classic jerk is in use

    def _feed_override(self, words: dict[str, float]) -> None:
        if "B" in words:
            self.saved_speed_factor = self.speed_factor
        if "S" in words and words["S"] > 0:
            self.speed_factor = words["S"] / 100.0
        if "R" in words:
            self.speed_factor = self.saved_speed_factor

    def _klipper(self, words: dict[str, float]) -> None:
        if words.get("VELOCITY", 0) > 0:
            # Klipper caps the toolhead's speed, not each axis; per axis is close enough for X/Y.
            self.max_feed[0] = self.max_feed[1] = words["VELOCITY"]
        if words.get("ACCEL", 0) > 0:
            self._set_all_accelerations(words["ACCEL"])
        if "SQUARE_CORNER_VELOCITY" in words:
            scv = max(words["SQUARE_CORNER_VELOCITY"], 0.0)
            self.junction_deviation = max(scv * scv * (math.sqrt(2) - 1) / self.accel_print, 1e-6)
