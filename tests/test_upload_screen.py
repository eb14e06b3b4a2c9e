"""Models are checked at upload: a hostile or broken STL, 3MF or OBJ is refused with its reason and not kept."""

from __future__ import annotations

import io
import zipfile

import pytest
import trimesh

from .hubkit import Farm, isolated_farm  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def zip_of(members: dict[str, bytes], zeros_mb: int = 0) -> bytes:
    """A zip of ``members``, plus a member of ``zeros_mb`` MiB of zeros: a few MB that unpack to much more."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, data in members.items():
            z.writestr(name, data)
        if zeros_mb:
            with z.open("padding.bin", "w", force_zip64=True) as f:
                for _ in range(zeros_mb // 8):
                    f.write(bytes(8 << 20))
    return buf.getvalue()


async def test_hostile_and_broken_models_are_refused_at_upload(isolated_farm: Farm) -> None:
    hub = await isolated_farm.hub()
    http = isolated_farm.http(hub)
    refused = [
        ("escape.3mf", zip_of({"../../etc/cron.d/x": b"boom", "3D/3dmodel.model": b"<model/>"}), "unsafe member"),
        ("bomb.3mf", zip_of({"3D/3dmodel.model": b"<model/>"}, zeros_mb=528), "unpack to more than"),
        ("notzip.3mf", b"PK? not really a zip" * 20, "not a zip"),
        ("binary.obj", bytes(range(256)) * 40, "not an OBJ"),
        ("text.stl", b"hello, this is not a mesh\n" * 20, "not an STL"),
    ]
    for name, data, reason in refused:
        status, problem = await http.call("POST", "/api/v1/files", params={"name": name}, data=data)
        assert status == 422 and reason in problem["detail"], (name, problem)
    status, files = await http.call("GET", "/api/v1/files")
    assert status == 200 and files["items"] == []  # nothing refused was kept

    good = trimesh.creation.box((10, 10, 10)).export(file_type="stl")
    status, stored = await http.call("POST", "/api/v1/files", params={"name": "cube.stl"}, data=good)
    assert status == 201 and stored["name"] == "cube.stl"
    # Files that are not models are not the screen's business.
    status, _ = await http.call("POST", "/api/v1/files", params={"name": "notes.txt"}, data=b"\x00\x01binary")
    assert status == 201
