"""Print-time estimate: a trapezoidal motion planner with look-ahead, as a Marlin-style firmware plans.

Every move becomes a block with a cruise speed (the feed rate capped per
axis), an acceleration (print, retract or travel, capped per axis) and the
fastest speed it may start at, from jerk or junction deviation at the corner
with the previous block. A window of blocks is planned backward (each block
must be able to slow down to the next one's entry) and forward (each must be
able to speed up from the previous one's), then each block's trapezoid gives
its time. Like a firmware's queue, only a bounded window is kept: blocks
older than the look-ahead are timed and dropped, so memory stays flat on any
file size.

The passes run in the firmware's order, backward then forward. PrusaSlicer
2.5 runs them forward then backward, and its backward pass raises entry
speeds back to the junction limit, so it assumes some speeds the previous
block cannot reach: its estimate comes out up to ~2 % shorter than ours on
slow-accelerating printers with short segments (gyroid at 500 mm/s²), and
within a few tenths of a percent elsewhere (``python -m bench.estimate``).

Waits a planner cannot see are estimated separately: heating (a
configurable rate per degree), homing and bed probing (fixed, configurable)
and dwells. ``moves_s`` is the part comparable with a slicer's own estimate.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

from hub.analysis.declared import DeclaredMachine
from hub.analysis.interpreter import Interpreter, Move, parse_line
from hub.analysis.limits import FirmwareLimits
from hub.analysis.machines import MachineModel
from hub.analysis.time_estimate import EstimatorSettings, LimitsUsed, ProgressCheck, TimeEstimate

__all__ = ["EstimatorSettings", "LimitsUsed", "MotionPlanner", "ProgressCheck", "TimeEstimate", "estimate_time"]

# Firmware queues hold 16 (8-bit Marlin) to 64+ blocks; planning 64 ahead is what
# modern boards do. Replanning once every 256 new blocks keeps the cost linear.
LOOKAHEAD_BLOCKS = 64
REPLAN_EVERY = 256
_MIN_FEED = 1e-4  # mm/s; a previous block slower than this counts as stopped

SYNC_CODES = frozenset({"M400", "G28", "G29", "G80", "G4", "M109", "M190", "M191", "M0", "M1",
                        "BED_MESH_CALIBRATE", "QUAD_GANTRY_LEVEL", "Z_TILT_ADJUST"})
PROBE_CODES = frozenset({"G29", "G80", "BED_MESH_CALIBRATE", "QUAD_GANTRY_LEVEL", "Z_TILT_ADJUST"})


class _Block:
    __slots__ = ("distance", "accel", "cruise", "entry", "exit", "max_entry", "safe", "nominal_length", "recalc")

    def time(self) -> float:
        """Accelerate from entry, cruise, decelerate to exit; a triangle when the block is too short."""
        a, d = self.accel, self.distance
        v0, v1, vc = self.entry, self.exit, self.cruise
        up = max(0.0, (vc * vc - v0 * v0) / (2 * a))
        down = max(0.0, (vc * vc - v1 * v1) / (2 * a))
        flat = d - up - down
        if flat < 0:
            up = min(max((2 * a * d - v0 * v0 + v1 * v1) / (4 * a), 0.0), d)
            flat = 0.0
            vc = math.sqrt(v0 * v0 + 2 * a * up)
            down = d - up
        t = (vc - v0) / a if vc > v0 else 0.0
        if flat > 0:
            t += flat / vc
        if down > 0:
            v_end = math.sqrt(max(0.0, vc * vc - 2 * a * down))
            t += (vc - v_end) / a
        return t


def _allowable(accel: float, target: float, distance: float) -> float:
    """Fastest speed from which ``target`` can still be reached within ``distance``."""
    return math.sqrt(target * target + 2 * accel * distance)


class MotionPlanner:
    """Feed it moves and commands (it is an interpreter listener); read ``result()`` at the end."""

    def __init__(self, machine: MachineModel, settings: EstimatorSettings | None = None,
                 declared: DeclaredMachine | None = None) -> None:
        self.settings = settings or EstimatorSettings()
        self.limits = FirmwareLimits(machine)
        self.machine_id = machine.id
        self.declared = declared
        if declared is not None and declared.has_limits:
            self.limits.declare(declared)
        self.marks: list[tuple[float, float, float | None]] = []  # (our moves clock, M73 P, M73 R)
        self.pending_marks: deque[tuple[int, float, float | None]] = deque()  # (blocks before it, P, R)
        self.timed = 0  # blocks timed so far
        self.blocks: list[_Block] = []
        self.n_blocks = 0
        self.moves_s = 0.0
        self.dwell_s = 0.0
        self.heating_s = 0.0
        self.homing_s = 0.0
        self.probing_s = 0.0
        # The previous block, as the junction of the next one needs it.
        self.prev_cruise = 0.0
        self.prev_safe = 0.0
        self.prev_axis_v = (0.0, 0.0, 0.0, 0.0)
        self.prev_unit: tuple[float, float, float] | None = None
        # Heater: (clock when heating started, temperature then, target)
        ambient = self.settings.ambient_c
        self.heaters: dict[str, tuple[float, float, float]] = {
            "hotend": (0.0, ambient, ambient), "bed": (0.0, ambient, ambient), "chamber": (0.0, ambient, ambient),
        }

    # ------------------------------------------------------------------ listener

    def move(self, m: Move) -> None:
        dx, dy, dz, de = m.dx, m.dy, m.dz, m.de
        xyz = math.sqrt(dx * dx + dy * dy + dz * dz)
        distance = xyz if xyz > 0 else abs(de)
        if distance <= 0:
            return
        lim = self.limits
        feed = m.feed * lim.speed_factor
        feed = max(feed, lim.min_travel_rate if de == 0 else lim.min_extruding_rate)
        inv = 1.0 / distance
        v = [feed * dx * inv, feed * dy * inv, feed * dz * inv, feed * de * inv * lim.extrude_factor]
        max_feed = lim.max_feed
        factor = 1.0
        for a in range(4):
            va = abs(v[a])
            if va > max_feed[a]:
                factor = min(factor, max_feed[a] / va)
        cruise = feed * factor
        if factor < 1.0:
            v = [x * factor for x in v]

        if de == 0:
            accel = lim.accel_travel
        elif xyz == 0:
            accel = lim.accel_retract
        else:
            accel = lim.accel_print
        max_accel = lim.max_accel
        for a, d in enumerate((dx, dy, dz, de)):
            share = abs(d) * inv
            if accel * share > max_accel[a]:
                accel = max_accel[a] / share

        unit = (dx / xyz, dy / xyz, dz / xyz) if xyz > 0 else None
        if lim.junction_deviation is not None:
            safe = 0.0
            junction = self._junction_by_deviation(unit, cruise, accel)
        else:
            safe = self._safe_speed(v, cruise)
            junction = self._junction_by_jerk(v, cruise, safe)

        b = _Block()
        b.distance = distance
        b.accel = accel
        b.cruise = cruise
        b.safe = safe
        allowable = _allowable(accel, safe, distance)
        b.entry = min(junction, allowable)
        b.max_entry = junction
        b.nominal_length = cruise <= allowable
        b.recalc = True
        b.exit = safe
        self.blocks.append(b)
        self.n_blocks += 1

        self.prev_cruise = cruise
        self.prev_safe = safe
        self.prev_axis_v = (v[0], v[1], v[2], v[3])
        self.prev_unit = unit
        if len(self.blocks) > REPLAN_EVERY:
            self._plan(keep=LOOKAHEAD_BLOCKS)

    def command(self, code: str, words: dict[str, float]) -> None:
        if code in SYNC_CODES:
            self._plan(keep=0)
        if code == "G4":
            self.dwell_s += words.get("P", 0.0) / 1000.0 + words.get("S", 0.0)
        elif code == "G28":
            self.homing_s += self.settings.homing_s
        elif code in PROBE_CODES:
            self.probing_s += self.settings.probing_s
        elif code in ("M104", "M109"):
            self._heat("hotend", words, wait=code == "M109")
        elif code in ("M140", "M190"):
            self._heat("bed", words, wait=code == "M190")
        elif code in ("M141", "M191"):
            self._heat("chamber", words, wait=code == "M191")
        elif code == "M73":
            if "P" in words:
                # Our clock at this mark is known once the blocks before it are timed.
                self.pending_marks.append((self.n_blocks, words["P"], words.get("R")))
        else:
            self.limits.apply(code, words)

    # ------------------------------------------------------------------ results

    def clock(self) -> float:
        """Seconds elapsed so far, not counting blocks still waiting in the look-ahead window."""
        return self.moves_s + self.dwell_s + self.heating_s + self.homing_s + self.probing_s

    def result(self) -> TimeEstimate:
        self._plan(keep=0)
        d = self.declared
        declared = d is not None and d.has_limits
        limits = LimitsUsed(
            source="slicer_config" if declared else "machine", machine=self.machine_id,
            slicer=d.slicer if d else None, mode=d.mode if declared and d else "normal",
            gcode_overrides=sorted(self.limits.overridden),
        )
        return TimeEstimate(
            total_s=self.clock(), moves_s=self.moves_s, dwell_s=self.dwell_s, heating_s=self.heating_s,
            homing_s=self.homing_s, probing_s=self.probing_s, blocks=self.n_blocks, limits=limits,
            progress=self._progress(),
        )

    def _progress(self) -> ProgressCheck | None:
        if not self.marks or self.moves_s <= 0:
            return None
        gap = max(abs(ours / self.moves_s * 100 - p) for ours, p, _ in self.marks)
        first_r = self.marks[0][2]
        return ProgressCheck(marks=len(self.marks), slicer_total_s=first_r * 60 if first_r is not None else None,
                             max_gap_pct=round(gap, 2))

    # ------------------------------------------------------------------ junctions

    def _safe_speed(self, v: list[float], cruise: float) -> float:
        """Speed this block may start or end at from a standstill without any axis exceeding its jerk.

        As Marlin: the first axis over its limit caps the speed at that limit,
        further axes scale it down in proportion.
        """
        safe = cruise
        limited = False
        jerks = self.limits.jerk
        for a in range(4):
            va = abs(v[a])
            jerk = jerks[a]
            if va > jerk:
                if not limited:
                    safe = jerk
                    limited = True
                elif va * safe > jerk * cruise:
                    safe = jerk * cruise / va
        return min(safe, cruise)

    def _junction_by_jerk(self, v: list[float], cruise: float, safe: float) -> float:
        if not self.blocks or self.prev_cruise <= _MIN_FEED:
            return safe
        prev_v = self.prev_axis_v
        prev_larger = self.prev_cruise > cruise
        # Coasting into a slower block: compare at the slower block's speed.
        shrink = cruise / self.prev_cruise if prev_larger else 1.0
        junction = cruise if prev_larger else self.prev_cruise
        v_factor = 1.0
        jerks = self.limits.jerk
        for a in range(4):
            out = prev_v[a] * shrink * v_factor
            into = v[a] * v_factor
            if out > into:
                change = out - into if (into > 0 or out < 0) else max(out, -into)
            else:
                change = into - out if (into < 0 or out > 0) else max(-out, into)
            if change > jerks[a]:
                v_factor *= jerks[a] / change
        junction *= v_factor
        # Both blocks could start from rest this fast anyway: the corner costs nothing more.
        threshold = junction * 0.99
        if self.prev_safe > threshold and safe > threshold:
            junction = safe
        return junction

    def _junction_by_deviation(self, unit: tuple[float, float, float] | None, cruise: float, accel: float) -> float:
        prev = self.prev_unit
        if not self.blocks or prev is None or unit is None or self.prev_cruise <= _MIN_FEED:
            return 0.0
        cos_theta = -(prev[0] * unit[0] + prev[1] * unit[1] + prev[2] * unit[2])
        limit = min(cruise, self.prev_cruise)
        if cos_theta > 0.999999:
            return 0.0  # full reversal
        if cos_theta < -0.999999:
            return limit  # straight on
        sin_half = math.sqrt(0.5 * (1.0 - cos_theta))
        deviation = self.limits.junction_deviation
        assert deviation is not None
        v_sq = accel * deviation * sin_half / (1.0 - sin_half)
        return min(math.sqrt(v_sq), limit)

    # ------------------------------------------------------------------ planning

    def _plan(self, keep: int) -> None:
        """Plan the window, time and drop all but the last ``keep`` blocks."""
        blocks = self.blocks
        if not blocks:
            return
        # Backward: each block must be able to slow down to the next block's entry.
        nxt = blocks[-1]
        for i in range(len(blocks) - 2, -1, -1):
            cur = blocks[i]
            if cur.entry != cur.max_entry or nxt.recalc:
                if cur.nominal_length:
                    entry = cur.max_entry
                else:
                    entry = min(cur.max_entry, _allowable(cur.accel, nxt.entry, cur.distance))
                if entry != cur.entry:
                    cur.entry = entry
                    cur.recalc = True
            nxt = cur
        # Forward: each block can only start as fast as the previous one could accelerate to.
        prev = blocks[0]
        for i in range(1, len(blocks)):
            cur = blocks[i]
            if not prev.nominal_length and prev.entry < cur.entry:
                entry = _allowable(prev.accel, prev.entry, prev.distance)
                if entry < cur.entry:
                    cur.entry = entry
                    cur.recalc = True
            prev = cur
        for i in range(len(blocks) - 1):
            blocks[i].exit = blocks[i + 1].entry
        blocks[-1].exit = blocks[-1].safe
        for b in blocks:
            b.recalc = False

        done = max(0, len(blocks) - keep)
        times = [blocks[i].time() for i in range(done)]
        pending = self.pending_marks
        if pending:
            clock, timed = self.moves_s, self.timed
            for t in times:
                while pending and pending[0][0] <= timed:
                    _, p, r = pending.popleft()
                    self.marks.append((clock, p, r))
                clock += t
                timed += 1
            while pending and pending[0][0] <= timed:
                _, p, r = pending.popleft()
                self.marks.append((clock, p, r))
        self.timed += done
        self.moves_s += sum(times)
        del blocks[:done]
        if blocks:
            # The timed blocks left at this speed; the next plan must not change it.
            blocks[0].max_entry = blocks[0].entry
        else:
            self.prev_cruise = 0.0
            self.prev_unit = None

    # ------------------------------------------------------------------ waits

    def _heat(self, heater: str, words: dict[str, float], wait: bool) -> None:
        target = words.get("S", words.get("R"))
        if target is None:
            return
        rate = {"hotend": self.settings.hotend_heat_rate_c_s, "bed": self.settings.bed_heat_rate_c_s,
                "chamber": self.settings.chamber_heat_rate_c_s}[heater]
        now = self.clock()
        started, from_c, old_target = self.heaters[heater]
        current = min(old_target, from_c + rate * (now - started)) if old_target > from_c else old_target
        if not wait:
            self.heaters[heater] = (now, current, target)
            return
        # Cooling down is taken as free: prints wait for cooling only at the very end.
        wait_s = max(0.0, target - current) / rate
        self.heating_s += wait_s
        self.heaters[heater] = (now + wait_s, target, target)


def estimate_time(lines: Iterable[str], machine: MachineModel, settings: EstimatorSettings | None = None,
                  declared: DeclaredMachine | None = None) -> TimeEstimate:
    """Estimate from G-code text lines; ``declared`` holds the limits a file's slicer stated
    (``declared.read_declared``), which ``analyze_gcode`` reads by itself."""
    planner = MotionPlanner(machine, settings, declared)
    interpreter = Interpreter([planner])
    for line in lines:
        parsed = parse_line(line)
        if parsed is not None:
            interpreter.execute(*parsed)
    return planner.result()
