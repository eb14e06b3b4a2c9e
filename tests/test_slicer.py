"""Slicing with the real PrusaSlicer: a good slice, the slicer's own error text, timeouts and cancellation kill it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import trimesh

from hub.analysis.machines import machine_ids
from hub.slicing.slicer import SlicerError, SlicerTimeout, compose_profile, profile_names, slice_mesh

from .prerequisites import needs_program

slicer = needs_program("prusa-slicer")


def slicers_running(marker: Path) -> list[int]:
    """Processes whose command line mentions ``marker``: ours, since every test has its own tmp_path."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if str(marker).encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def heavy_model(tmp_path: Path) -> Path:
    """Takes PrusaSlicer a few seconds: plenty of triangles and layers."""
    path = tmp_path / "heavy.stl"
    trimesh.creation.icosphere(subdivisions=6, radius=90).export(path)
    return path


@pytest.mark.integration
@slicer
async def test_a_good_slice_returns_gcode_and_its_analysis(tmp_path: Path) -> None:
    mesh = tmp_path / "cube.stl"
    trimesh.creation.box((15, 15, 6)).export(mesh)
    profile = compose_profile("prusa-mk4", "petg", out_dir=tmp_path / "profiles")
    result = await slice_mesh(mesh, profile, tmp_path / "out" / "cube.gcode", timeout_s=60,
                              extra={"fill_density": "40%"})
    assert result.gcode == tmp_path / "out" / "cube.gcode" and result.gcode.is_file()
    assert not list((tmp_path / "out").glob("*.part"))
    a = result.analysis
    assert a.layers == 30
    assert a.metadata.filament_type == ["PETG"] and a.metadata.printer_model == "MK4"
    assert a.estimate.moves_s > 0 and a.extrusion[0].filament_mm > 0
    assert "; fill_density = 40%" in result.gcode.read_text()  # the override reached the slicer


@pytest.mark.integration
@slicer
async def test_the_slicers_error_reaches_the_exception_verbatim(tmp_path: Path) -> None:
    mesh = tmp_path / "cube.stl"
    trimesh.creation.box((10, 10, 10)).export(mesh)
    profile = compose_profile("prusa-mk3s", "pla", out_dir=tmp_path)
    out = tmp_path / "cube.gcode"
    # Relative extrusion without resetting E each layer is refused by PrusaSlicer itself.
    with pytest.raises(SlicerError) as caught:
        await slice_mesh(mesh, profile, out, timeout_s=60, extra={"layer_gcode": ""})
    assert "Relative extruder addressing requires resetting the extruder position at each layer" in str(caught.value)
    assert not out.exists() and not list(tmp_path.glob("*.part"))


@pytest.mark.integration
@slicer
async def test_a_model_larger_than_the_bed_is_an_error_too(tmp_path: Path) -> None:
    mesh = tmp_path / "huge.stl"
    trimesh.creation.box((400, 400, 10)).export(mesh)
    profile = compose_profile("prusa-mk3s", "pla", out_dir=tmp_path)
    with pytest.raises(SlicerError, match=r"(?i)print volume|outside|fit"):
        await slice_mesh(mesh, profile, tmp_path / "huge.gcode", timeout_s=60)


@pytest.mark.integration
@slicer
async def test_a_timeout_kills_the_slicer(tmp_path: Path) -> None:
    mesh = heavy_model(tmp_path)
    profile = compose_profile("prusa-mk3s", "pla", out_dir=tmp_path)
    out = tmp_path / "heavy.gcode"
    with pytest.raises(SlicerTimeout, match="took longer than 0.5 s"):
        await slice_mesh(mesh, profile, out, timeout_s=0.5)
    assert slicers_running(tmp_path) == []
    assert not out.exists() and not list(tmp_path.glob("*.part"))


@pytest.mark.integration
@slicer
async def test_cancelling_the_job_kills_the_slicer(tmp_path: Path) -> None:
    mesh = heavy_model(tmp_path)
    profile = compose_profile("prusa-mk3s", "pla", out_dir=tmp_path)
    task = asyncio.create_task(slice_mesh(mesh, profile, tmp_path / "heavy.gcode", timeout_s=60))
    for _ in range(100):
        if slicers_running(tmp_path):
            break
        await asyncio.sleep(0.02)
    assert slicers_running(tmp_path), "the slicer never started"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert slicers_running(tmp_path) == []


@pytest.mark.integration
@slicer
async def test_bad_requests_fail_before_starting_anything(tmp_path: Path) -> None:
    mesh = tmp_path / "cube.stl"
    trimesh.creation.box((10, 10, 10)).export(mesh)
    profile = compose_profile("prusa-mk3s", "pla", out_dir=tmp_path)
    with pytest.raises(ValueError, match="not a slicer option"):
        await slice_mesh(mesh, profile, tmp_path / "x.gcode", timeout_s=5, extra={"fill_density; rm -rf /": "1"})
    with pytest.raises(SlicerError, match="no such model"):
        await slice_mesh(tmp_path / "missing.stl", profile, tmp_path / "x.gcode", timeout_s=5)
    with pytest.raises(ValueError, match="no filament profile 'wood'"):
        compose_profile("prusa-mk3s", "wood", out_dir=tmp_path)


def test_every_machine_has_a_printer_profile_and_composes(tmp_path: Path) -> None:
    assert set(profile_names("printer")) == set(machine_ids())
    for machine in machine_ids():
        for material in profile_names("filament"):
            text = compose_profile(machine, material, out_dir=tmp_path).read_text()
            assert text.count("\nlayer_height = ") == 1  # one value per key: PrusaSlicer refuses duplicates
            assert "gcode_flavor = marlin2" in text
