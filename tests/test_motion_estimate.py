"""The print-time estimate: hand-computable moves, the look-ahead, the file's own limits, and PrusaSlicer's figure."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import trimesh

from hub.analysis.interpreter import Interpreter
from hub.analysis.machines import GENERIC, Axes, MachineModel, load_machine, machine_ids
from hub.analysis.motion import REPLAN_EVERY, EstimatorSettings, MotionPlanner, estimate_time
from hub.slicing.slicer import compose_profile, slice_mesh
from protocol.config import ConfigError

from .prerequisites import program

# 1000 mm/s² everywhere and (almost) no jerk: every move starts and ends at rest,
# so a move of d mm at v mm/s takes d/v + v/a exactly.
STILL = GENERIC.model_copy(update={
    "max_feedrate": Axes(x=1000, y=1000, z=1000, e=1000),
    "max_acceleration": Axes(x=100_000, y=100_000, z=100_000, e=100_000),
    "acceleration": GENERIC.acceleration.model_copy(update={"print": 1000, "retract": 1000, "travel": 1000}),
    "jerk": Axes(x=1e-9, y=1e-9, z=1e-9, e=1e-9),
})


def moves_s(gcode: str, machine: MachineModel = STILL) -> float:
    return estimate_time(gcode.splitlines(), machine).moves_s


def test_one_long_move_is_distance_over_speed_plus_the_ramps() -> None:
    # 100 mm at 100 mm/s with 1000 mm/s²: 0.1 s up, 0.9 s cruising, 0.1 s down.
    assert moves_s("G1 X100 F6000") == pytest.approx(1.1, abs=1e-6)


def test_a_short_move_never_reaches_its_feed_rate() -> None:
    # 2 mm: accelerate for 1 mm, brake for 1 mm; the peak is sqrt(2·a·1 mm) = 44.7 mm/s.
    peak = math.sqrt(2 * 1000 * 1)
    assert moves_s("G1 X2 F6000") == pytest.approx(2 * peak / 1000, rel=1e-6)


def test_jerk_lets_a_move_start_and_stop_at_that_speed() -> None:
    machine = STILL.model_copy(update={"jerk": Axes(x=10, y=10, z=0.4, e=5)})
    ramp = (100 - 10) / 1000
    ramp_mm = (100**2 - 10**2) / 2000
    assert moves_s("G1 X100 F6000", machine) == pytest.approx(2 * ramp + (100 - 2 * ramp_mm) / 100, rel=1e-6)


def test_look_ahead_carries_speed_through_collinear_segments() -> None:
    one = moves_s("G1 X100 F6000")
    # 1000 segments of 0.1 mm, more than several planning windows.
    many = moves_s("\n".join(f"G1 X{i / 10:.1f} F6000" for i in range(1, 1001)))
    assert many == pytest.approx(one, rel=1e-3)


def test_a_sharp_corner_costs_time_a_straight_line_does_not() -> None:
    machine = STILL.model_copy(update={"jerk": Axes(x=8, y=8, z=0.4, e=5)})
    straight = moves_s("G1 X50 F6000\nG1 X100", machine)
    corner = moves_s("G1 X50 F6000\nG1 Y50", machine)
    assert corner > straight + 0.05


def test_klipper_rounds_corners_by_junction_deviation_and_ignores_m205() -> None:
    voron = load_machine("voron-2.4-350")
    straight = moves_s("G1 X50 F12000\nG1 X100", voron)
    corner = moves_s("G1 X50 F12000\nG1 Y50", voron)
    assert corner > straight
    assert moves_s("M205 X1 Y1\nG1 X50 F12000\nG1 Y50", voron) == pytest.approx(corner)
    assert moves_s("SET_VELOCITY_LIMIT ACCEL=500\nG1 X100 F6000", voron) == pytest.approx(100 / 100 + 100 / 500)


def test_dwell_counts_and_is_reported_apart() -> None:
    estimate = estimate_time(["G1 X100 F6000", "G4 P500", "G4 S2"], STILL)
    assert estimate.dwell_s == pytest.approx(2.5)
    assert estimate.total_s == pytest.approx(1.1 + 2.5, abs=1e-6)


def test_the_files_own_limits_override_the_machine() -> None:
    assert moves_s("M204 T500\nG1 X100 F6000") == pytest.approx(100 / 100 + 100 / 500)  # travel acceleration
    assert moves_s("M203 X50\nG1 X100 F6000") == pytest.approx(100 / 50 + 50 / 1000)  # per-axis feed cap
    assert moves_s("M201 X250\nG1 X100 F6000") == pytest.approx(100 / 100 + 100 / 250)  # per-axis acceleration
    # Extruding moves use the print acceleration (P), travel keeps its own.
    assert moves_s("M83\nM204 P250\nG1 X100 E5 F6000") == pytest.approx(100 / 100 + 100 / 250)
    assert moves_s("M204 P250\nG1 X100 F6000") == pytest.approx(1.1)


def test_zero_limits_in_a_file_are_ignored_not_fatal() -> None:
    assert moves_s("M204 P0 T0 R0\nM203 X0\nM201 X0\nM220 S0\nG1 X100 F6000") == pytest.approx(1.1)
    voron = load_machine("voron-2.4-350")
    assert moves_s("SET_VELOCITY_LIMIT ACCEL=0 VELOCITY=0\nG1 X100 F6000", voron) == pytest.approx(
        moves_s("G1 X100 F6000", voron))


def test_speed_factor_units_and_relative_moves() -> None:
    assert moves_s("M220 S50\nG1 X100 F6000") == pytest.approx(100 / 50 + 50 / 1000)
    assert moves_s("G20\nG1 X3.937007874 F236.2204724") == pytest.approx(1.1, rel=1e-6)  # inches
    assert moves_s("G91\nG1 X50 F6000\nG1 X-50") == pytest.approx(2 * (50 / 100 + 100 / 1000))


def test_an_arc_takes_its_length_at_speed() -> None:
    machine = STILL.model_copy(update={"jerk": Axes(x=20, y=20, z=1, e=5)})
    # A full circle of radius 10 at 10 mm/s, below the jerk: no ramps, 2π·10/10 s.
    estimate = estimate_time(["G1 X0 Y0 F600", "G2 X0 Y0 I10 J0"], machine)
    assert estimate.moves_s == pytest.approx(2 * math.pi, rel=1e-3)


def test_heating_waits_for_the_rise_not_counting_time_already_spent() -> None:
    settings = EstimatorSettings(ambient_c=25, hotend_heat_rate_c_s=2.0, bed_heat_rate_c_s=0.5)
    cold = estimate_time(["M109 S215"], STILL, settings)
    assert cold.heating_s == pytest.approx((215 - 25) / 2.0)
    # Heating started, then a minute of dwell: only the rest is waited for.
    warm = estimate_time(["M104 S215", "G4 S60", "M109 S215"], STILL, settings)
    assert warm.heating_s == pytest.approx((215 - 25) / 2.0 - 60)
    assert estimate_time(["M190 S60"], STILL, settings).heating_s == pytest.approx(70)
    assert estimate_time(["M109 S215", "M109 S200"], STILL, settings).heating_s == pytest.approx(95)


def test_homing_and_probing_take_their_configured_time() -> None:
    settings = EstimatorSettings(homing_s=12, probing_s=45)
    estimate = estimate_time(["G28", "G29", "G1 X100 F6000"], STILL, settings)
    assert (estimate.homing_s, estimate.probing_s) == (12, 45)
    assert estimate.total_s == pytest.approx(12 + 45 + 1.1, abs=1e-6)


def test_memory_stays_bounded_by_the_planning_window() -> None:
    planner = MotionPlanner(STILL)
    interpreter = Interpreter([planner])
    peak = 0
    for i in range(5000):
        interpreter.feed_line(f"G1 X{(i % 100) + 1} Y{i % 7} F3000")
        peak = max(peak, len(planner.blocks))
    assert peak <= REPLAN_EVERY + 1
    assert planner.result().blocks == 5000


def test_machine_models_load_and_unknown_ones_are_named() -> None:
    assert {"prusa-mk3s", "prusa-mk4", "ender3-v2", "voron-2.4-350", "bambu-x1c"} <= set(machine_ids())
    mk3s = load_machine("prusa-mk3s")
    assert (mk3s.build_volume.x, mk3s.build_volume.y, mk3s.build_volume.z) == (250, 210, 210)
    assert load_machine("voron-2.4-350").junction_deviation is not None
    with pytest.raises(ConfigError, match="unknown machine model 'prusa-mk9'"):
        load_machine("prusa-mk9")


@pytest.mark.integration
async def test_within_three_percent_of_prusaslicer_on_a_real_slice(tmp_path: Path) -> None:
    program("prusa-slicer")
    mesh = tmp_path / "cylinder.stl"
    trimesh.creation.cylinder(radius=12, height=10, sections=64).export(mesh)
    machine = load_machine("prusa-mk3s")
    profile = compose_profile(machine, "pla", out_dir=tmp_path)
    result = await slice_mesh(mesh, profile, tmp_path / "cylinder.gcode", timeout_s=60, machine=machine)
    theirs = result.analysis.metadata.estimated_time_s
    assert theirs is not None
    assert result.analysis.estimate.moves_s == pytest.approx(theirs, rel=0.03)
    # Our total adds what PrusaSlicer leaves out: heating, homing and bed levelling in the start G-code.
    assert result.analysis.estimate.total_s > theirs + result.analysis.estimate.heating_s


def test_m220_saves_and_restores_the_speed_factor_with_bare_flags() -> None:
    # PrusaSlicer's MMU tool change: "M220 B" keeps the factor, "M220 R" brings it back after a slow part.
    restored = moves_s("M220 S50\nM220 B\nM220 S100\nG1 X100 F6000\nG4 P0\nM220 R\nG1 X200 F6000")
    assert restored == pytest.approx((100 / 100 + 100 / 1000) + (100 / 50 + 50 / 1000))
