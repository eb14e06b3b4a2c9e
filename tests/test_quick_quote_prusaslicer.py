"""The quick quote against the real PrusaSlicer: each rule brings the grams within 10 % of the slicer's,
and any INI PrusaSlicer writes is read without error."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import trimesh

from hub.analysis.machines import load_machine
from hub.analysis.mesh import load_objects
from hub.analysis.quick_quote import QuoteSettings, quick_quote, quick_quote_file
from hub.slicing.slicer import compose_profile, slice_mesh

T = trimesh.transformations.translation_matrix
needs_slicer = pytest.mark.skipif(shutil.which("prusa-slicer") is None,
                                  reason="prusa-slicer is not installed (scripts/setup-system.sh installs it)")


def _mushroom(path: Path) -> None:
    stem = trimesh.creation.cylinder(radius=5, height=15, sections=64, transform=T((0, 0, 7.5)))
    cap = trimesh.creation.cylinder(radius=16, height=4, sections=64, transform=T((0, 0, 17)))
    trimesh.util.concatenate([stem, cap]).export(path)


# name: (model writer, profile changes, the rule's setting and its value "without the rule", if it has one)
RULES = {
    "solid_below_area": (lambda p: trimesh.creation.cylinder(radius=3.5, height=30, sections=48).export(p),
                         {"solid_infill_below_area": "70"}, ("solid_infill_below_area", 0.0)),
    "thin_walls": (lambda p: trimesh.creation.box((40, 1.0, 15)).export(p),
                   {"thin_walls": "1", "perimeters": "3"}, None),  # nothing to switch off: it is all perimeters
    "min_shell_thickness": (lambda p: trimesh.creation.box((40, 40, 4)).export(p),
                            {"top_solid_layers": "2", "top_solid_min_thickness": "1.4",
                             "bottom_solid_layers": "2", "bottom_solid_min_thickness": "1"}, ("top_layers", 2)),
    "brim": (lambda p: trimesh.creation.box((15, 15, 3)).export(p), {"brim_width": "8"}, ("brim_width", 0.0)),
    "first_layer_and_skirt": (lambda p: trimesh.creation.box((10, 10, 2)).export(p),
                              {"first_layer_extrusion_width": "0.7", "skirts": "3", "skirt_height": "2",
                               "min_skirt_length": "40"}, ("skirt_loops", 0)),
    "support": (_mushroom, {"support_material": "1", "support_material_auto": "1"}, ("support", False)),
    "auto_widths": (lambda p: trimesh.creation.box((20, 20, 10)).export(p),
                    {"extrusion_width": "0", "perimeter_extrusion_width": "0", "infill_extrusion_width": "0",
                     "solid_infill_extrusion_width": "0", "external_perimeter_extrusion_width": "0",
                     "perimeters": "4"}, ("line_width", 0.3)),
}


@needs_slicer
@pytest.mark.integration
@pytest.mark.parametrize("rule", list(RULES))
async def test_each_rule_brings_the_quote_within_ten_percent(tmp_path: Path, rule: str) -> None:
    write, changes, switch = RULES[rule]
    mesh = tmp_path / f"{rule}.stl"
    write(mesh)
    machine = load_machine("prusa-mk3s")
    base = compose_profile(machine, "pla", out_dir=tmp_path)
    extra = tmp_path / "changes.ini"
    extra.write_text("".join(f"{k} = {v}\n" for k, v in changes.items()))
    result = await slice_mesh(mesh, [base, extra], tmp_path / f"{rule}.gcode", timeout_s=120, machine=machine)
    theirs = result.analysis.metadata.total_filament_g
    assert theirs
    settings = QuoteSettings.from_profile([base, extra])
    ours = quick_quote_file(mesh, settings).grams
    print(f"\n{rule}: PrusaSlicer {theirs:.2f} g, quote {ours:.2f} g ({ours / theirs - 1:+.1%})")
    assert abs(ours / theirs - 1) < 0.10
    if switch is not None:
        key, without = switch
        blind = quick_quote_file(mesh, settings.model_copy(update={key: without})).grams
        print(f"{rule}: without the rule {blind:.2f} g ({blind / theirs - 1:+.1%})")
        assert abs(blind / theirs - 1) > abs(ours / theirs - 1)


def _two_tool_3mf(path: Path) -> None:
    """Two boxes on the bed, the second printed by extruder 2 (PrusaSlicer's per-object setting in its 3MF)."""
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box((15, 15, 10), T((100, 100, 5))), node_name="a", geom_name="a")
    scene.add_geometry(trimesh.creation.box((15, 15, 6), T((125, 100, 3))), node_name="b", geom_name="b")
    plain = path.with_suffix(".plain.3mf")
    scene.export(plain)
    objects = "".join(
        f'<object id="{i}" instances_count="1"><metadata type="object" key="extruder" value="{i}"/>'
        f'<volume firstid="0" lastid="11"><metadata type="volume" key="extruder" value="{i}"/></volume></object>'
        for i in (1, 2))
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for name in src.namelist():
            out.writestr(name, src.read(name))
        out.writestr("Metadata/Slic3r_PE_model.config", f'<?xml version="1.0" encoding="UTF-8"?><config>{objects}</config>')


@needs_slicer
@pytest.mark.integration
async def test_two_tools_purge_on_the_wipe_tower_as_prusaslicer_does(tmp_path: Path) -> None:
    model = tmp_path / "two.3mf"
    _two_tool_3mf(model)
    machine = load_machine("prusa-mk3s")
    base = compose_profile(machine, "pla", out_dir=tmp_path)
    mmu = tmp_path / "mmu.ini"
    mmu.write_text("nozzle_diameter = 0.4,0.4\nwipe_tower = 1\nsingle_extruder_multi_material = 1\n"
                   "wiping_volumes_matrix = 0,100,100,0\n")
    result = await slice_mesh(model, [base, mmu], tmp_path / "two.gcode", timeout_s=120, machine=machine)
    assert {u.tool for u in result.analysis.extrusion} == {0, 1}
    theirs = result.analysis.metadata.total_filament_g
    assert theirs
    settings = QuoteSettings.from_profile([base, mmu])
    assert (settings.purge_mm3, settings.ramming_mm3) == (100, pytest.approx(20.575))
    parts = [m for _, m in load_objects(model)[1]]
    quote = quick_quote(parts, settings, tools=[0, 1])
    single = quick_quote(parts, settings)
    print(f"\ntwo tools: PrusaSlicer {theirs:.2f} g, quote {quote.grams:.2f} g ({quote.grams / theirs - 1:+.1%}), "
          f"without purging {single.grams:.2f} g")
    assert abs(quote.grams / theirs - 1) < 0.10
    assert single.grams < 0.7 * theirs


@needs_slicer
@pytest.mark.integration
def test_an_ini_prusaslicer_saves_with_auto_widths_quotes(tmp_path: Path) -> None:
    saved = tmp_path / "saved.ini"
    done = subprocess.run(["prusa-slicer", "--save", str(saved)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and saved.is_file(), done.stderr[-2000:]
    text = saved.read_text()
    assert "\nextrusion_width = 0\n" in text and "\nperimeter_extrusion_width = 0\n" in text
    q = QuoteSettings.from_profile(saved)
    assert q.line_width == pytest.approx(1.125 * 0.4)  # PrusaSlicer's automatic width
    assert q.solid_infill_below_area == 70 and q.skirt_layers >= 1
    cube = tmp_path / "cube.stl"
    trimesh.creation.box((20, 20, 20)).export(cube)
    assert quick_quote_file(cube, q).grams > 0


SMALL = trimesh.creation.box((5, 5, 1), T((0, 0, 0.5)))
ODD_VALUES = ["0", "0%", "", "auto", "-1", "nan", "inf", "1e400", "250%", "0.4,0.6", '"5"', "15%;20%"]
KEYS = ["layer_height", "first_layer_height", "nozzle_diameter", "extrusion_width", "perimeter_extrusion_width",
        "first_layer_extrusion_width", "support_material_extrusion_width", "perimeters", "top_solid_layers",
        "top_solid_min_thickness", "fill_density", "solid_infill_below_area", "perimeter_speed",
        "external_perimeter_speed", "solid_infill_speed", "infill_speed", "skirts", "skirt_height",
        "brim_width", "support_material_threshold", "support_material_spacing", "filament_density",
        "filament_diameter", "wiping_volumes_matrix", "slowdown_below_layer_time", "min_skirt_length"]


@pytest.mark.parametrize("key", KEYS)
def test_no_value_in_an_ini_makes_the_quote_fail(tmp_path: Path, key: str) -> None:
    for value, other in itertools.product(ODD_VALUES, ("0", "200%")):
        profile = tmp_path / "odd.ini"
        profile.write_text(f"{key} = {value}\nextrusion_width = {other}\n# comment = x\n; another = y\nnot a pair\n")
        q = QuoteSettings.from_profile(profile)
        assert q.line_width > 0 and q.layer_height > 0
        assert quick_quote([SMALL], q).grams > 0
