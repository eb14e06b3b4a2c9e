"""Mesh analysis of uploaded models (STL, OBJ, 3MF): volume, area, extent, and whether they fit a bed.

Uploads are untrusted. Before trimesh parses anything we check that the bytes
are what the extension claims, and for 3MF (a zip) that no member name
escapes the archive and that the members do not inflate past a limit.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import structlog
import trimesh
from pydantic import BaseModel, ConfigDict, Field

from hub.analysis.geometry import BoundingBox, convex_hull, fits_rotated
from hub.analysis.machines import BuildVolume

log = structlog.get_logger("farmhand.analysis")

MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_UNZIPPED_BYTES = 1024 * 1024 * 1024
MAX_ZIP_MEMBERS = 10_000
FORMATS = ("stl", "obj", "3mf")


class ObjectInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    triangles: int
    volume_mm3: float = Field(description="meaningful only when watertight")
    area_mm2: float
    bbox: BoundingBox
    watertight: bool


class MeshAnalysis(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str
    objects: list[ObjectInfo]
    triangles: int
    volume_mm3: float
    area_mm2: float
    bbox: BoundingBox
    watertight: bool
    footprint: list[tuple[float, float]] = Field(description="convex hull of the model seen from above, mm")

    def fits(self, build_volume: BuildVolume | tuple[float, float, float]) -> bool:
        """Whether the model as placed fits the build volume, allowing any turn about Z."""
        x, y, z = (build_volume.x, build_volume.y, build_volume.z) if isinstance(build_volume, BuildVolume) \
            else build_volume
        return self.bbox.size[2] <= z + 1e-6 and fits_rotated(self.footprint, x, y)


def _check_stl(path: Path, size: int) -> None:
    with path.open("rb") as f:
        head = f.read(84)
        if len(head) == 84:
            (count,) = struct.unpack("<I", head[80:84])
            if count > 0 and size == 84 + 50 * count:
                return
        f.seek(0)
        text = f.read(4096)
    if text.lstrip().lower().startswith(b"solid") and b"\0" not in text and b"facet" in text.lower():
        return
    raise ValueError(f"{path.name}: not an STL file (neither binary nor ASCII STL)")


def _check_obj(path: Path) -> None:
    with path.open("rb") as f:
        head = f.read(65536)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the read limit is fine; anything earlier is binary.
        if exc.start < len(head) - 4:
            raise ValueError(f"{path.name}: not an OBJ file (binary data)") from None
    if b"\0" in head or b"v " not in head:
        raise ValueError(f"{path.name}: not an OBJ file (no vertices)")


def check_3mf(path: Path, max_unzipped: int = MAX_UNZIPPED_BYTES) -> None:
    """Refuse archives whose member names escape the archive or whose contents inflate too far."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ValueError(f"{path.name}: not a 3MF file (not a zip archive)") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise ValueError(f"{path.name}: {len(members)} archive members, more than {MAX_ZIP_MEMBERS}")
        total = 0
        for info in members:
            name = info.filename
            parts = PurePosixPath(name.replace("\\", "/")).parts
            if (not name or name.startswith(("/", "\\")) or ".." in parts or "\0" in name
                    or (parts and ":" in parts[0])):
                raise ValueError(f"{path.name}: unsafe member name {name!r} in the archive")
            total += info.file_size
            if total > max_unzipped:
                raise ValueError(f"{path.name}: contents unpack to more than {max_unzipped} bytes")
        if not any(m.filename.lower().endswith(".model") for m in members):
            raise ValueError(f"{path.name}: not a 3MF file (no 3D model part)")


def load_objects(path: Path, *, max_bytes: int = MAX_FILE_BYTES,
                 max_unzipped: int = MAX_UNZIPPED_BYTES) -> tuple[str, list[tuple[str, trimesh.Trimesh]]]:
    """The model's objects as (name, mesh in mm, placed as in the file). Raises ``ValueError`` on bad input."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"{path.name}: unsupported model format {fmt!r} (use {', '.join(FORMATS)})")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path.name}: empty file")
    if size > max_bytes:
        raise ValueError(f"{path.name}: {size} bytes, more than the {max_bytes} allowed")
    if fmt == "stl":
        _check_stl(path, size)
    elif fmt == "obj":
        _check_obj(path)
    else:
        check_3mf(path, max_unzipped)
    try:
        scene = trimesh.load(path, file_type=fmt, force="scene", process=True)
    except Exception as exc:  # trimesh raises anything from KeyError to XML errors on bad files
        log.info("mesh_unreadable", path=str(path), error=repr(exc))
        raise ValueError(f"{path.name}: unreadable {fmt.upper()} file ({type(exc).__name__}: {exc})") from None
    objects = []
    for node in scene.graph.nodes_geometry:
        transform, geometry_name = scene.graph[node]
        geometry = scene.geometry[geometry_name]
        if not isinstance(geometry, trimesh.Trimesh) or len(geometry.faces) == 0:
            continue
        if not np.isfinite(geometry.vertices).all():
            raise ValueError(f"{path.name}: object {node!r} has coordinates that are not numbers")
        objects.append((str(node), geometry.copy().apply_transform(transform)))
    if not objects:
        raise ValueError(f"{path.name}: no triangles in the model")
    return fmt, objects


def _box(points: np.ndarray) -> BoundingBox:
    lo, hi = points.min(axis=0), points.max(axis=0)
    return BoundingBox(min=(float(lo[0]), float(lo[1]), float(lo[2])), max=(float(hi[0]), float(hi[1]), float(hi[2])))


def analyze_mesh(path: Path, *, max_bytes: int = MAX_FILE_BYTES, max_unzipped: int = MAX_UNZIPPED_BYTES) -> MeshAnalysis:
    fmt, objects = load_objects(path, max_bytes=max_bytes, max_unzipped=max_unzipped)
    infos = [
        ObjectInfo(name=name, triangles=len(m.faces), volume_mm3=abs(float(m.volume)), area_mm2=float(m.area),
                   bbox=_box(m.vertices), watertight=bool(m.is_watertight))
        for name, m in objects
    ]
    vertices = np.vstack([m.vertices for _, m in objects])
    hull = convex_hull(vertices[:, :2])
    return MeshAnalysis(
        format=fmt, objects=infos, triangles=sum(o.triangles for o in infos),
        volume_mm3=sum(o.volume_mm3 for o in infos), area_mm2=sum(o.area_mm2 for o in infos),
        bbox=_box(vertices), watertight=all(o.watertight for o in infos),
        footprint=[(float(x), float(y)) for x, y in hull],
    )
