"""Mesh analysis of uploads: measurements per format, fitting a bed, and refusing hostile or broken files."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest
import trimesh

from hub.analysis.machines import load_machine
from hub.analysis.mesh import analyze_mesh
from hub.analysis.layers import layer_sections


def two_object_3mf(path: Path) -> Path:
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box((20, 20, 20)), node_name="cube", geom_name="cube")
    scene.add_geometry(trimesh.creation.box((10, 10, 5)), node_name="plate", geom_name="plate",
                       transform=trimesh.transformations.translation_matrix((40, 0, -7.5)))
    scene.export(path)
    return path


@pytest.mark.parametrize("suffix", [".stl", ".obj"])
def test_a_20mm_cube(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"cube{suffix}"
    trimesh.creation.box((20, 20, 20)).export(path)
    a = analyze_mesh(path)
    assert a.format == suffix[1:]
    assert a.volume_mm3 == pytest.approx(8000, rel=0.01)
    assert a.area_mm2 == pytest.approx(2400, rel=0.01)
    assert a.bbox.size == pytest.approx((20, 20, 20))
    assert (a.triangles, a.watertight, len(a.objects)) == (12, True, 1)


def test_3mf_objects_are_measured_one_by_one(tmp_path: Path) -> None:
    a = analyze_mesh(two_object_3mf(tmp_path / "plate.3mf"))
    by_name = {o.name: o for o in a.objects}
    assert set(by_name) == {"cube", "plate"}
    assert by_name["cube"].volume_mm3 == pytest.approx(8000, rel=0.01)
    assert by_name["plate"].volume_mm3 == pytest.approx(500, rel=0.01)
    assert by_name["plate"].bbox.min == pytest.approx((35, -5, -10))  # placed as in the file
    assert a.volume_mm3 == pytest.approx(8500, rel=0.01)
    assert a.bbox.size == pytest.approx((55, 20, 20))


def test_an_open_mesh_is_measured_but_not_watertight(tmp_path: Path) -> None:
    box = trimesh.creation.box((10, 10, 10))
    open_box = trimesh.Trimesh(box.vertices, box.faces[:-2])
    path = tmp_path / "open.stl"
    open_box.export(path)
    assert analyze_mesh(path).watertight is False


def test_fits_allows_turning_about_z(tmp_path: Path) -> None:
    path = tmp_path / "bar.stl"
    trimesh.creation.box((250, 10, 5)).export(path)
    bar = analyze_mesh(path)
    assert bar.fits((250, 210, 210))
    # Too long for 200 × 200 along either edge, but the diagonal is 283 mm: turned 45° it takes 184 × 184.
    assert bar.fits((200, 200, 210))
    assert not bar.fits((180, 180, 210))
    assert not bar.fits((300, 300, 4))  # too tall
    assert bar.fits(load_machine("prusa-mk3s").build_volume)


def test_garbage_and_empty_files_are_refused(tmp_path: Path) -> None:
    noise = bytes((i * 97 + 13) % 256 for i in range(5000))
    for name in ("noise.stl", "noise.obj", "noise.3mf"):
        (tmp_path / name).write_bytes(noise)
        with pytest.raises(ValueError, match="not an? (STL|OBJ|3MF) file"):
            analyze_mesh(tmp_path / name)
    (tmp_path / "empty.stl").write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        analyze_mesh(tmp_path / "empty.stl")
    (tmp_path / "nothing.stl").write_text("solid nothing\nfacet normal 0 0 1\nendsolid nothing\n")
    with pytest.raises(ValueError):
        analyze_mesh(tmp_path / "nothing.stl")
    nan_facet = struct.pack("<12fH", *([float("nan")] * 12), 0)
    (tmp_path / "nan.stl").write_bytes(b"\0" * 80 + struct.pack("<I", 1) + nan_facet)
    with pytest.raises(ValueError, match="no triangles"):
        analyze_mesh(tmp_path / "nan.stl")
    (tmp_path / "model.step").write_text("ISO-10303-21;")
    with pytest.raises(ValueError, match="unsupported model format"):
        analyze_mesh(tmp_path / "model.step")


def test_a_3mf_zip_bomb_is_refused_before_it_is_unpacked(tmp_path: Path) -> None:
    path = tmp_path / "bomb.3mf"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("3D/3dmodel.model", b"<model/>")
        z.writestr("3D/padding.bin", b"\0" * (64 * 1024 * 1024))
    assert path.stat().st_size < 1024 * 1024  # 64 MB of zeros squeezes into a few hundred kB
    with pytest.raises(ValueError, match="unpack to more than"):
        analyze_mesh(path, max_unzipped=32 * 1024 * 1024)


@pytest.mark.parametrize("member", ["../../etc/cron.d/evil", "/etc/passwd", "3D/../../x.model", "C:\\Windows\\x"])
def test_a_3mf_member_that_escapes_the_archive_is_refused(tmp_path: Path, member: str) -> None:
    path = tmp_path / "escape.3mf"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("3D/3dmodel.model", b"<model/>")
        z.writestr(member, b"x")
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="unsafe member name"):
        analyze_mesh(path)


def test_layer_sections_measure_area_and_outline() -> None:
    cylinder = trimesh.creation.cylinder(radius=10, height=4, sections=256)
    area, outline = layer_sections(cylinder, -2.0, 0.2, 20)
    assert area == pytest.approx([3.14159265 * 100] * 20, rel=1e-3)
    assert outline == pytest.approx([2 * 3.14159265 * 10] * 20, rel=1e-3)
    ring = trimesh.creation.annulus(r_min=5, r_max=10, height=2, sections=256)
    area, _ = layer_sections(ring, -1.0, 0.2, 10)
    assert area == pytest.approx([3.14159265 * (100 - 25)] * 10, rel=1e-3)  # the hole counts negative
