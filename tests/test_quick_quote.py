"""The quick quote's slicer rules, one by one, on models the tests make (hand-computed where it can be)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import trimesh

from hub.analysis.layers import bodies, facing_area, layer_bounds
from hub.analysis.quick_quote import QuoteSettings, quick_quote, quick_quote_file
from hub.analysis.wipe_tower import tool_changes

T = trimesh.transformations.translation_matrix
BARE = QuoteSettings(material="PLA", skirt_loops=0, infill=0.15, infill_overlap=1.0)


def pin(r: float = 3.0, h: float = 30.0) -> trimesh.Trimesh:
    return trimesh.creation.cylinder(radius=r, height=h, sections=64, transform=T((0, 0, h / 2)))


def mushroom() -> trimesh.Trimesh:
    stem = trimesh.creation.cylinder(radius=5, height=15, sections=64, transform=T((0, 0, 7.5)))
    cap = trimesh.creation.cylinder(radius=16, height=4, sections=64, transform=T((0, 0, 17)))
    return trimesh.util.concatenate([stem, cap])


def test_a_cube_adds_up_layer_by_layer() -> None:
    q = BARE.model_copy(update={"material": "PETG", "perimeters": 2, "top_layers": 5, "bottom_layers": 4,
                                "infill": 0.2})
    quote = quick_quote([trimesh.creation.box((20, 20, 20), T((0, 0, 10)))], q)
    s = 0.45 - 0.2 * (1 - math.pi / 4)
    w = 2 * s
    ring = 80 * w - math.pi * w * w  # the offset loses its corners
    interior = 400 - ring
    assert quote.layers == 100
    assert quote.shell_mm3 == pytest.approx(100 * ring * 0.2 + 9 * interior * 0.2, rel=0.005)
    assert quote.infill_mm3 == pytest.approx(91 * interior * 0.2 * 0.2, rel=0.005)
    assert quote.grams == pytest.approx((quote.shell_mm3 + quote.infill_mm3) / 1000 * 1.27)


def test_regions_below_the_solid_area_are_printed_solid() -> None:
    part = pin()
    volume = part.volume
    solid = quick_quote([part], BARE.model_copy(update={"solid_infill_below_area": 70}))
    sparse = quick_quote([part], BARE.model_copy(update={"solid_infill_below_area": 0}))
    assert solid.volume_mm3 == pytest.approx(volume, rel=0.03)
    assert sparse.volume_mm3 < 0.8 * volume
    # A thick part is not affected: its infill regions are far larger than 70 mm².
    big = trimesh.creation.box((30, 30, 10), T((0, 0, 5)))
    assert quick_quote([big], BARE.model_copy(update={"solid_infill_below_area": 70})).volume_mm3 == pytest.approx(
        quick_quote([big], BARE).volume_mm3)


def test_a_wall_thinner_than_its_perimeters_is_solid_perimeters() -> None:
    wall = trimesh.creation.box((30, 0.8, 10), T((0, 0, 5)))
    quote = quick_quote([wall], BARE.model_copy(update={"perimeters": 3}))
    assert quote.volume_mm3 == pytest.approx(wall.volume, rel=0.02)
    assert quote.infill_mm3 == 0


def test_the_minimum_shell_thickness_raises_the_solid_layers(tmp_path: Path) -> None:
    profile = tmp_path / "p.ini"
    profile.write_text("layer_height = 0.2\ntop_solid_layers = 3\ntop_solid_min_thickness = 1.1\n"
                       "bottom_solid_layers = 3\nbottom_solid_min_thickness = 0.5\n")
    q = QuoteSettings.from_profile(profile)
    assert (q.top_layers, q.bottom_layers) == (6, 3)
    plate = trimesh.creation.box((40, 40, 6), T((0, 0, 3)))
    thick = quick_quote([plate], BARE.model_copy(update={"top_layers": 6, "bottom_layers": 3}))
    thin = quick_quote([plate], BARE.model_copy(update={"top_layers": 3, "bottom_layers": 3}))
    w = 2 * (0.45 - 0.2 * (1 - math.pi / 4))
    interior = 1600 - (160 * w - math.pi * w * w)
    # Three more solid layers, three fewer sparse ones.
    assert thick.shell_mm3 - thin.shell_mm3 == pytest.approx(3 * 0.2 * interior, rel=0.005)
    assert thin.infill_mm3 - thick.infill_mm3 == pytest.approx(3 * 0.2 * interior * 0.15, rel=0.005)


def test_first_layer_width_and_height_come_from_the_profile(tmp_path: Path) -> None:
    profile = tmp_path / "p.ini"
    profile.write_text("layer_height = 0.1\nfirst_layer_height = 0.3\nfirst_layer_extrusion_width = 200%\n"
                       "nozzle_diameter = 0.4\nextrusion_width = 0\n")
    q = QuoteSettings.from_profile(profile)
    # Percent of the first layer's height; the other widths are automatic, 1.125 × nozzle.
    assert (q.first_layer_height, q.first_layer_width, q.line_width) == (0.3, pytest.approx(0.6), pytest.approx(0.45))
    assert layer_bounds(0.0, 1.0, 0.1, 0.3) == pytest.approx([0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    cube = [trimesh.creation.box((20, 20, 1), T((0, 0, 0.5)))]
    skirted = BARE.model_copy(update={"skirt_loops": 1, "skirt_layers": 1, "skirt_min_filament_mm": 0,
                                      "first_layer_height": 0.3})
    narrow = quick_quote(cube, skirted.model_copy(update={"first_layer_width": 0.4})).skirt_mm3
    wide = quick_quote(cube, skirted.model_copy(update={"first_layer_width": 0.8})).skirt_mm3
    assert wide / narrow == pytest.approx((0.8 - 0.3 * (1 - math.pi / 4)) / (0.4 - 0.3 * (1 - math.pi / 4)))


def test_skirt_loops_for_the_minimum_length_and_a_brim() -> None:
    cube = [trimesh.creation.box((20, 20, 10), T((0, 0, 5)))]
    s = 0.45 - 0.2 * (1 - math.pi / 4)
    loop = 80 + 2 * math.pi * 2
    one = BARE.model_copy(update={"skirt_loops": 1, "skirt_layers": 2, "skirt_distance": 2, "skirt_min_filament_mm": 0})
    assert quick_quote(cube, one).skirt_mm3 == pytest.approx(2 * loop * s * 0.2)
    # 30 mm of filament cannot come from one loop: every skirt layer gets the loops it takes.
    longer = one.model_copy(update={"skirt_min_filament_mm": 30})
    loops = math.ceil(30 * math.pi * 0.875**2 / (loop * s * 0.2))
    assert quick_quote(cube, longer).skirt_mm3 == pytest.approx(2 * loops * loop * s * 0.2)
    brim = quick_quote(cube, BARE.model_copy(update={"brim_width": 5})).skirt_mm3
    assert brim == pytest.approx((80 * 5 + math.pi * 25) * 0.2, rel=0.1)


def test_support_goes_under_overhangs_only_when_asked() -> None:
    cap = mushroom()
    assert quick_quote([cap], BARE).support_mm3 == 0
    q = BARE.model_copy(update={"support": True, "support_width": 0.35, "support_spacing": 2.5})
    supported = quick_quote([cap], q).support_mm3
    area = math.pi * (16**2 - 5**2)
    body = area * 15 * 0.35 / (2.5 + 0.35)
    assert body < supported < body * 2  # plus solid interface layers and the sheath
    # A part whose sides are steep enough needs none.
    assert quick_quote([pin()], q).support_mm3 == 0


def test_support_threshold_and_build_plate_only() -> None:
    # A funnel: its underside is 45° from horizontal.
    funnel = trimesh.creation.cone(radius=10, height=10, sections=64)
    funnel.apply_transform(trimesh.transformations.rotation_matrix(math.pi, (1, 0, 0)))
    funnel.apply_translation((0, 0, 10 - funnel.bounds[0][2]))
    funnel = trimesh.util.concatenate([funnel, pin(1.5, 10)])
    q = BARE.model_copy(update={"support": True})
    assert quick_quote([funnel], q.model_copy(update={"support_threshold_deg": 30})).support_mm3 == 0
    assert quick_quote([funnel], q.model_copy(update={"support_threshold_deg": 60})).support_mm3 > 100
    # A shelf over a lower step: its support would stand on the part, which "build plate only" forbids.
    step = trimesh.creation.box((30, 10, 5), T((0, 0, 2.5)))
    post = trimesh.creation.box((5, 10, 20), T((-12.5, 0, 10)))
    shelf = trimesh.creation.box((25, 10, 3), T((2.5, 0, 18.5)))
    model = [trimesh.util.concatenate([step, post, shelf])]
    assert quick_quote(model, q).support_mm3 > 100
    assert quick_quote(model, q.model_copy(update={"support_buildplate_only": True})).support_mm3 == 0


def test_each_tool_change_purges() -> None:
    a = trimesh.creation.box((10, 10, 10), T((0, 0, 5)))
    b = trimesh.creation.box((10, 10, 4), T((20, 0, 2)))
    q = BARE.model_copy(update={"purge_mm3": 100, "wipe_tower_brim": 0})
    assert quick_quote([a, b], q).purge_mm3 == 0  # one tool
    # 20 layers with both tools: one change each (each layer starts with the last one's tool), then tool 0 alone.
    layers = np.arange(50)
    changes = tool_changes({0: layers < 50, 1: layers < 20})
    assert list(changes) == [1] * 20 + [0] * 30
    s = 0.45 - 0.2 * (1 - math.pi / 4)
    depth = 100 / (60 * 0.2)  # one purge a layer across the 60 mm tower
    tower = 2 * (60 + depth) * s * 0.2 * 20
    assert quick_quote([a, b], q, tools=[0, 1]).purge_mm3 == pytest.approx(20 * 100 + tower)
    # Tools 0 and 2, then all three after a layer that ended with tool 2: two changes, not three.
    yes, no = True, False
    assert list(tool_changes({0: np.array([yes, yes]), 1: np.array([no, yes]), 2: np.array([yes, yes])})) == [1, 2]
    with pytest.raises(ValueError, match="tools"):
        quick_quote([a, b], q, tools=[0])


def test_bodies_and_facing_areas() -> None:
    two = trimesh.util.concatenate([pin(), trimesh.creation.box((5, 5, 5), T((20, 0, 2.5)))])
    assert sorted(round(float(b.volume)) for b in bodies(two)) == [125, round(pin().volume)]
    up, down = facing_area(trimesh.creation.box((10, 10, 1), T((0, 0, 0.5))), layer_bounds(0, 1, 0.2))
    assert (up[-1], down[0], up[:-1].sum(), down[1:].sum()) == (pytest.approx(100), pytest.approx(100), 0, 0)


def test_quote_of_a_file_and_an_unknown_material(tmp_path: Path) -> None:
    path = tmp_path / "sheet.stl"
    trimesh.creation.box((40, 40, 0.6)).export(path)
    assert quick_quote_file(path, BARE).volume_mm3 == pytest.approx(40 * 40 * 0.6, rel=0.02)
    with pytest.raises(ValueError, match="unknown material"):
        quick_quote_file(path, QuoteSettings(material="unobtainium"))


def test_a_finely_detailed_mesh_gets_coarser_support_columns_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.analysis import support

    q = BARE.model_copy(update={"support": True})
    fine = quick_quote([mushroom()], q).support_mm3
    monkeypatch.setattr(support, "MAX_PAIRS", 2_000)
    coarse = quick_quote([mushroom()], q).support_mm3
    assert coarse == pytest.approx(fine, rel=0.15)


def test_small_layers_slow_down_only_to_the_minimum_print_speed(tmp_path: Path) -> None:
    q = BARE.model_copy(update={"min_layer_time_s": 60, "min_print_speed": 10})
    part = [pin(2, 10)]
    slow = quick_quote(part, q).time_s
    faster_floor = quick_quote(part, q.model_copy(update={"min_print_speed": 20})).time_s
    assert slow < 50 * 60  # never the full minute per layer: the path takes well under that at 10 mm/s
    assert faster_floor == pytest.approx(slow / 2, rel=0.05)
    profile = tmp_path / "p.ini"
    profile.write_text("cooling = 0\nslowdown_below_layer_time = 30\nmin_print_speed = 12\n")
    settings = QuoteSettings.from_profile(profile)
    assert (settings.min_layer_time_s, settings.min_print_speed) == (0.0, 12.0)
