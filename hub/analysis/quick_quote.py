"""Grams and a rough print time from the mesh alone, before anything is sliced.

The model of a slicer's output, and its assumptions:

* Shells. Under every face of the surface lies a solid skin. Perimeters give
  it ``perimeters`` × line spacing measured horizontally; floors and ceilings
  add ``bottom_layers`` / ``top_layers`` layers measured vertically. A sloped
  face gets both, along its normal: t_wall·sinθ + t_cap·|cosθ|, because the
  slicer keeps the vertical shell thick on slopes ("ensure vertical shell
  thickness") by adding solid infill inside the perimeters. Where two faces
  meet at a sharp convex edge (a box's rim) their skins overlap; that wedge,
  edge length × t₁ × t₂ × tan(φ/2), is counted once. Shell volume is capped
  at the part's volume: thin parts are solid all through.
* Infill. ``infill`` (0…1) of the interior left inside the shells, times
  ``infill_overlap`` (1.1): infill lines overlap the perimeters and are
  anchored along them, which PrusaSlicer's own output shows as ~10 % more
  plastic than the nominal density.
* Skirt. ``skirt_loops`` loops around the first layers' convex hull, offset
  by ``skirt_distance``, ``skirt_layers`` high, with extra loops on the first
  layer until ``skirt_min_filament_mm`` of filament is laid.
* Line spacing is the slicer's: width − height × (1 − π/4), the flat-sided
  oval a line of plastic squashes into.
* Grams = volume × the material's density. Purge lines and the like in
  start G-code are not counted (slicers do not count them either).
* Time, layer by layer (the mesh is cut at each layer to get its area and
  outline): perimeters along the outline, a share of the solid volume where
  the outline changes, infill in the rest, each at its own volumetric rate
  (speed × spacing × layer height) capped by the material's flow limit.
  ``motion_efficiency`` (0.6) accounts for accelerating into corners and
  for travel. A layer never takes less than ``min_layer_time_s`` ×
  ``layer_time_overrun`` (1.15): slicers slow a small layer down to the
  minimum by their speeds alone, and acceleration makes it take longer.
  Both factors were fitted on ``python -m bench.estimate``; the result is
  within about ±20 %. Use the estimate from sliced G-code for anything that
  matters.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import trimesh
from pydantic import BaseModel, ConfigDict, Field

from hub.analysis.geometry import convex_hull, perimeter
from hub.analysis.mesh import load_objects

DENSITY_G_CM3 = {"PLA": 1.24, "PETG": 1.27, "ABS": 1.04, "ASA": 1.07, "TPU": 1.21, "PA": 1.14, "PC": 1.20}
MAX_FLOW_MM3_S = {"PLA": 15.0, "PETG": 8.0, "ABS": 11.0, "ASA": 11.0, "TPU": 3.0, "PA": 8.0, "PC": 8.0}


class QuoteSettings(BaseModel):
    """Defaults match ``hub/slicing-profiles`` quality 0.20mm on the MK3S; ``from_profile`` reads any profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    material: str = "PLA"
    density_g_cm3: float | None = Field(None, gt=0, description="overrides the material's usual density")
    max_flow_mm3_s: float | None = Field(None, gt=0, description="overrides the material's usual flow limit")
    layer_height: float = Field(0.2, gt=0)
    line_width: float = Field(0.45, gt=0)
    perimeters: int = Field(2, ge=0)
    top_layers: int = Field(5, ge=0)
    bottom_layers: int = Field(4, ge=0)
    infill: float = Field(0.15, ge=0, le=1)
    infill_overlap: float = Field(1.1, ge=1)
    skirt_loops: int = Field(1, ge=0)
    skirt_distance: float = Field(2.0, ge=0)
    skirt_layers: int = Field(3, ge=0)
    skirt_min_filament_mm: float = Field(4.0, ge=0)
    filament_diameter: float = Field(1.75, gt=0)
    perimeter_speed: float = Field(35.0, gt=0, description="mm/s, the mean of inner and outer perimeters")
    solid_speed: float = Field(70.0, gt=0)
    infill_speed: float = Field(80.0, gt=0)
    motion_efficiency: float = Field(0.6, gt=0, le=1)
    min_layer_time_s: float = Field(10.0, ge=0)
    layer_time_overrun: float = Field(1.15, ge=1)

    @classmethod
    def from_profile(cls, path: Path) -> QuoteSettings:
        """Settings from a PrusaSlicer INI (one ``compose_profile`` wrote, or one saved by the slicer)."""
        keys: dict[str, str] = {}
        for line in path.read_text().splitlines():
            key, eq, value = line.partition("=")
            if eq and not key.lstrip().startswith(("#", ";")):
                keys[key.strip()] = value.strip()

        def num(key: str, default: float, of: float | None = None) -> float:
            raw = keys.get(key, "").split(",")[0].strip()
            if not raw:
                return default
            if raw.endswith("%"):
                return float(raw[:-1]) / 100 * (of if of is not None else 1.0)
            value = float(raw)
            return value if value > 0 or of is None else default

        h = num("layer_height", 0.2)
        width = num("perimeter_extrusion_width", num("extrusion_width", 0.45), of=num("nozzle_diameter", 0.4))
        perimeter = num("perimeter_speed", 35.0)
        outer = num("external_perimeter_speed", perimeter, of=perimeter)
        solid = num("solid_infill_speed", 70.0, of=num("infill_speed", 80.0))
        top_layers = max(int(num("top_solid_layers", 5)), math.ceil(num("top_solid_min_thickness", 0) / h))
        bottom_layers = max(int(num("bottom_solid_layers", 4)), math.ceil(num("bottom_solid_min_thickness", 0) / h))
        return cls(
            material=keys.get("filament_type", "PLA").split(";")[0].strip() or "PLA",
            density_g_cm3=num("filament_density", 0.0) or None,
            max_flow_mm3_s=num("filament_max_volumetric_speed", 0.0) or None,
            layer_height=h, line_width=width, perimeters=int(num("perimeters", 2)),
            top_layers=top_layers, bottom_layers=bottom_layers, infill=num("fill_density", 0.15),
            skirt_loops=int(num("skirts", 1)), skirt_distance=num("skirt_distance", 2.0),
            skirt_layers=int(num("skirt_height", 3)), skirt_min_filament_mm=num("min_skirt_length", 4.0),
            filament_diameter=num("filament_diameter", 1.75),
            perimeter_speed=(perimeter + outer) / 2, solid_speed=solid, infill_speed=num("infill_speed", 80.0),
            min_layer_time_s=num("slowdown_below_layer_time", 10.0),
        )


class Quote(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    material: str
    grams: float
    volume_mm3: float = Field(description="plastic laid down")
    shell_mm3: float
    infill_mm3: float
    skirt_mm3: float
    part_volume_mm3: float
    layers: int
    time_s: float = Field(description="rough; see the module's assumptions")


def _shell(mesh: trimesh.Trimesh, q: QuoteSettings, spacing: float) -> tuple[float, float]:
    """(wall, floor and ceiling) volume of the solid skin under the surface."""
    areas = mesh.area_faces
    nz = np.clip(mesh.face_normals[:, 2], -1.0, 1.0)
    wall = q.perimeters * spacing * np.sqrt(1.0 - nz * nz)
    cap = np.where(nz > 0, q.top_layers, q.bottom_layers) * q.layer_height * np.abs(nz)
    thickness = wall + cap
    pairs = mesh.face_adjacency
    ends = mesh.vertices[mesh.face_adjacency_edges]
    lengths = np.linalg.norm(ends[:, 0] - ends[:, 1], axis=1)
    half_angle = np.minimum(mesh.face_adjacency_angles, np.pi * 0.9) / 2
    overlap = lengths * thickness[pairs[:, 0]] * thickness[pairs[:, 1]] * np.tan(half_angle) * mesh.face_adjacency_convex
    total = float(np.sum(areas * thickness) - np.sum(overlap))
    walls = float(np.sum(areas * wall))
    return min(walls, total), max(0.0, total - walls)


def quick_quote(objects: list[trimesh.Trimesh], settings: QuoteSettings | None = None) -> Quote:
    q = settings or QuoteSettings()
    material = q.material.upper()
    density = q.density_g_cm3 or DENSITY_G_CM3.get(material)
    if density is None:
        raise ValueError(f"unknown material {q.material!r}: give its density (known: {', '.join(DENSITY_G_CM3)})")
    spacing = q.line_width - q.layer_height * (1 - math.pi / 4)
    part = wall_total = cap_total = infill_total = 0.0
    for mesh in objects:
        volume = abs(float(mesh.volume))
        walls, caps = _shell(mesh, q, spacing)
        shell = walls + caps
        if shell > volume:
            # Thin part: all solid. Keep the walls/caps split for the time estimate.
            walls, caps = walls * volume / shell, caps * volume / shell
            shell = volume
        part += volume
        wall_total += walls
        cap_total += caps
        infill_total += q.infill * q.infill_overlap * (volume - shell)

    vertices = np.vstack([m.vertices for m in objects])
    z0 = vertices[:, 2].min()
    height = vertices[:, 2].max() - z0
    skirt = _skirt(vertices, z0, q, spacing)
    volume = wall_total + cap_total + infill_total + skirt
    layers = max(1, round(height / q.layer_height))
    time_s = _time(q, material, spacing, objects, z0, layers, cap_total, skirt)
    return Quote(
        material=material, grams=volume / 1000.0 * density, volume_mm3=volume,
        shell_mm3=wall_total + cap_total, infill_mm3=infill_total, skirt_mm3=skirt, part_volume_mm3=part,
        layers=layers, time_s=time_s,
    )


def _skirt(vertices: np.ndarray, z0: float, q: QuoteSettings, spacing: float) -> float:
    if q.skirt_loops == 0 or q.skirt_layers == 0:
        return 0.0
    near_bed = vertices[vertices[:, 2] <= z0 + q.skirt_layers * q.layer_height + 1e-9]
    loop = perimeter(convex_hull(near_bed[:, :2])) + 2 * math.pi * q.skirt_distance
    per_loop = loop * spacing * q.layer_height
    min_volume = q.skirt_min_filament_mm * math.pi * (q.filament_diameter / 2) ** 2
    first_layer_loops = max(q.skirt_loops, math.ceil(min_volume / per_loop) if per_loop > 0 else 0)
    return per_loop * (first_layer_loops + q.skirt_loops * (q.skirt_layers - 1))


def layer_sections(mesh: trimesh.Trimesh, z0: float, layer_height: float, layers: int) -> tuple[np.ndarray, np.ndarray]:
    """Area (mm²) and outline length (mm) of each layer's slice, cut at mid-layer as slicers do.

    Each triangle crossing a plane adds one oriented segment of the outline;
    the shoelace sum of the segments is the enclosed area, holes negative.
    """
    tri = mesh.triangles
    z = tri[:, :, 2]
    first = np.ceil((z.min(axis=1) - z0) / layer_height - 0.5).astype(int)
    last = np.floor((z.max(axis=1) - z0) / layer_height - 0.5).astype(int)
    spans = np.clip(last - first + 1, 0, None)
    face = np.repeat(np.arange(len(tri)), spans)
    layer = np.repeat(first, spans) + (np.arange(spans.sum()) - np.repeat(np.cumsum(spans) - spans, spans))
    keep = (layer >= 0) & (layer < layers)
    face, layer = face[keep], layer[keep]
    plane = z0 + (layer + 0.5) * layer_height
    t = tri[face]
    points = []
    for a, b in ((0, 1), (1, 2), (2, 0)):
        za, zb = t[:, a, 2], t[:, b, 2]
        crossing = (za - plane) * (zb - plane) < 0
        f = np.where(crossing, (plane - za) / np.where(zb != za, zb - za, 1.0), np.nan)
        points.append(t[:, a, :2] + f[:, None] * (t[:, b, :2] - t[:, a, :2]))
    stacked = np.stack(points, axis=1)  # (pairs, 3 edges, xy); NaN where an edge does not cross
    valid = ~np.isnan(stacked[:, :, 0])
    two = valid.sum(axis=1) == 2  # a vertex exactly on the plane is rare enough to skip
    stacked, valid, layer = stacked[two], valid[two], layer[two]
    order = np.argsort(~valid, axis=1, kind="stable")[:, :2]
    p = np.take_along_axis(stacked, order[:, :1, None], axis=1)[:, 0]
    q = np.take_along_axis(stacked, order[:, 1:2, None], axis=1)[:, 0]
    normal = mesh.face_normals[face[two], :2]
    d = q - p
    # Outline runs counter-clockwise around solid: the outward normal is on its right.
    flip = d[:, 1] * normal[:, 0] - d[:, 0] * normal[:, 1] < 0
    p, q = np.where(flip[:, None], q, p), np.where(flip[:, None], p, q)
    area = np.zeros(layers)
    length = np.zeros(layers)
    np.add.at(area, layer, 0.5 * (p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]))
    np.add.at(length, layer, np.hypot(d[:, 0], d[:, 1]))
    return area, length


def _time(q: QuoteSettings, material: str, spacing: float, objects: list[trimesh.Trimesh], z0: float,
          layers: int, caps: float, skirt: float) -> float:
    """Per layer: its perimeters, a share of the solid layers and its infill, but never under the minimum layer time."""
    cross = spacing * q.layer_height
    limit = q.max_flow_mm3_s or MAX_FLOW_MM3_S.get(material, 10.0)
    area = np.zeros(layers)
    outline = np.zeros(layers)
    for mesh in objects:
        a, length = layer_sections(mesh, z0, q.layer_height, layers)
        area += np.abs(a)
        outline += length
    layer_volume = area * q.layer_height
    walls = np.minimum(outline * q.perimeters * cross, layer_volume)
    walls[0] += skirt
    # Solid layers sit where the outline changes between layers; spread the solid volume that way.
    change = np.abs(np.diff(area, prepend=0.0, append=0.0))
    weight = change[:-1] + change[1:]
    solid = caps * weight / weight.sum() if weight.sum() > 0 else np.zeros(layers)
    solid = np.minimum(solid, np.maximum(layer_volume - walls, 0.0))
    infill = np.maximum(layer_volume - walls - solid, 0.0) * q.infill * q.infill_overlap

    def rate(speed: float) -> float:
        return min(speed * cross, limit)

    per_layer = (walls / rate(q.perimeter_speed) + solid / rate(q.solid_speed)
                 + infill / rate(q.infill_speed)) / q.motion_efficiency
    return float(np.sum(np.maximum(per_layer, q.min_layer_time_s * q.layer_time_overrun)))


def quick_quote_file(path: Path, settings: QuoteSettings | None = None) -> Quote:
    _, objects = load_objects(path)
    return quick_quote([m for _, m in objects], settings)
