"""A second slicer: G-code from the real CuraEngine read by our parser (metadata, layers, per-tool extrusion).

CuraEngine is Debian's ``cura-engine``; the machine definitions it needs come
from ``scripts/peers/cura-definitions.sh`` (under ``.peers/cura``). Cura's own
time estimate is known to be loose, so ours is reported beside it, not held to it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trimesh

from hub.analysis.gcode import analyze_gcode

from .prerequisites import missing_reason, program

pytestmark = pytest.mark.integration

DEFINITIONS = Path(__file__).resolve().parents[1] / ".peers" / "cura" / "definitions"
PLA_DENSITY = 1.24


def _cura(tmp_path: Path, parts: list[tuple[trimesh.Trimesh, int]]) -> Path:
    program("CuraEngine")
    if not (DEFINITIONS / "fdmprinter.def.json").is_file():
        pytest.skip(missing_reason("Cura's definitions are not under .peers/cura (scripts/peers/cura-definitions.sh)"))
    extruders = 1 + max(tool for _, tool in parts)
    cmd = ["CuraEngine", "slice", "-j", str(DEFINITIONS / "fdmprinter.def.json"),
           "-s", f"machine_extruder_count={extruders}", "-s", "machine_width=220", "-s", "machine_depth=220",
           "-s", "machine_height=250", "-s", "layer_height=0.2", "-s", "layer_height_0=0.2",
           "-s", "material_diameter=1.75", "-s", "infill_sparse_density=20"]
    for tool in range(extruders):
        cmd += [f"-e{tool}", "-j", str(DEFINITIONS / "fdmextruder.def.json"), "-s", f"extruder_nr={tool}",
                "-s", "material_diameter=1.75"]
    for i, (mesh, tool) in enumerate(parts):
        path = tmp_path / f"part{i}.stl"
        mesh.export(path)
        cmd += ["-l", str(path), "-s", f"extruder_nr={tool}"]
    out = tmp_path / "cura.gcode"
    done = subprocess.run([*cmd, "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_a_cura_file_gives_its_slicer_layers_and_filament(tmp_path: Path) -> None:
    box = trimesh.creation.box((20, 20, 10)).apply_translation((110, 110, 5))
    gcode = _cura(tmp_path, [(box, 0)])
    text = gcode.read_text()
    a = analyze_gcode(gcode)
    assert a.metadata.slicer == "Cura_SteamEngine 4.13.0"
    assert (a.layers, a.layers_from) == (int(text.split(";LAYER_COUNT:")[1].split()[0]), "tags")
    assert a.layers == 50  # 10 mm at 0.2 mm
    assert a.bbox is not None and a.bbox.size[2] == pytest.approx(10, abs=0.3)
    # Cura's own clock: its header says 6666 s (a placeholder); the last TIME_ELAPSED is the estimate.
    elapsed = float(text.rsplit(";TIME_ELAPSED:", 1)[1].split()[0])
    assert a.metadata.estimated_time_s == pytest.approx(elapsed)
    [usage] = a.extrusion
    grams = usage.volume_cm3 * PLA_DENSITY
    # 4000 mm³ of box with 20 % infill and solid shells lands between a quarter and all of it.
    assert 0.25 * 4.0 * PLA_DENSITY < grams < 4.0 * PLA_DENSITY
    print(f"\nCura's estimate {elapsed:.0f} s, ours {a.estimate.moves_s:.0f} s "
          f"({(a.estimate.moves_s / elapsed - 1) * 100:+.1f} %, limits from {a.estimate.limits.source})")
    assert 0.5 < a.estimate.moves_s / elapsed < 2.0


def test_two_tools_are_counted_apart(tmp_path: Path) -> None:
    big = trimesh.creation.box((20, 20, 10)).apply_translation((90, 110, 5))
    small = trimesh.creation.box((10, 10, 10)).apply_translation((130, 110, 5))
    a = analyze_gcode(_cura(tmp_path, [(big, 0), (small, 1)]))
    usage = {u.tool: u.volume_cm3 for u in a.extrusion}
    assert set(usage) == {0, 1}
    # Four times the footprint takes more than twice the plastic, shells and all.
    assert usage[0] > 2 * usage[1] > 0
