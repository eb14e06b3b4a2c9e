"""Grams and a rough print time from the mesh alone, before anything is sliced.

The mesh is cut into the slicer's layers (``layers.py``) and each body's
layers are filled as PrusaSlicer fills them:

* Perimeters: ``perimeters`` lines along the outline, each one line spacing
  (width − height × (1 − π/4), the flat-sided oval a line squashes into)
  wide, never more than the layer's area: a wall thinner than its
  perimeters is printed as perimeters only, solid.
* Top and bottom shells: under every up-facing surface (its area seen from
  above) ``top_layers`` layers are solid, over every down-facing one
  ``bottom_layers``; profiles' minimum shell thickness raises those counts.
  A slope is covered layer by layer as the slicer covers it.
* Solid infill below an area: an infill region smaller than
  ``solid_infill_below_area`` (70 mm² by PrusaSlicer's default) is printed
  solid, so slender parts are solid all through.
* Sparse infill: ``infill`` of the rest, times ``infill_overlap`` (1.1):
  infill lines overlap the perimeters and are anchored along them, which
  PrusaSlicer's own output shows as ~10 % more plastic than the nominal.
* Skirt and brim around the first layer (first-layer line width), support
  under overhangs when the profile asks for it (``support.py``), and for
  several tools the purge on the wipe tower at each tool change.
* Grams = volume × the material's density. Purge lines in start G-code are
  not counted (slicers do not count them either).

Time, layer by layer: perimeters, solid and sparse infill each at their own
volumetric rate (speed × spacing × layer height) capped by the material's
flow limit; ``motion_efficiency`` (0.6) accounts for accelerating into
corners and for travel, and a layer never takes less than
``min_layer_time_s`` × ``layer_time_overrun`` (1.15), unless that would
need slower than ``min_print_speed``. Rough (tens of percent on small parts);
use the estimate from sliced G-code for anything that matters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from pydantic import BaseModel, ConfigDict, Field

from hub.analysis.geometry import convex_hull, perimeter
from hub.analysis.layers import bodies, facing_area, layer_bounds, layer_sections, sections_at, spacing, within
from hub.analysis.mesh import load_objects
from hub.analysis.quote_settings import QuoteSettings
from hub.analysis.support import support_volume
from hub.analysis.wipe_tower import tool_changes, tower_volume

__all__ = ["DENSITY_G_CM3", "Quote", "QuoteSettings", "layer_sections", "quick_quote", "quick_quote_file"]

DENSITY_G_CM3 = {"PLA": 1.24, "PETG": 1.27, "ABS": 1.04, "ASA": 1.07, "TPU": 1.21, "PA": 1.14, "PC": 1.20}
# Plastic a pattern lays relative to its nominal density, from PrusaSlicer's own output (bench.estimate).
PATTERN_PLASTIC = {"honeycomb": 1.45}
SLOPE_COVER = 0.15
MAX_FLOW_MM3_S = {"PLA": 15.0, "PETG": 8.0, "ABS": 11.0, "ASA": 11.0, "TPU": 3.0, "PA": 8.0, "PC": 8.0}


class Quote(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    material: str
    grams: float
    volume_mm3: float = Field(description="plastic laid down")
    shell_mm3: float = Field(description="perimeters, top and bottom layers and infill printed solid")
    infill_mm3: float
    skirt_mm3: float = Field(description="skirt and brim")
    support_mm3: float = 0.0
    purge_mm3: float = 0.0
    part_volume_mm3: float
    layers: int
    time_s: float = Field(description="rough; see the module's assumptions")


class _Layers:
    """Per-layer volumes of every body, summed: walls, solid infill and sparse infill (mm³)."""

    def __init__(self, bounds: np.ndarray, q: QuoteSettings) -> None:
        self.bounds = bounds
        self.thickness = np.diff(bounds)
        self.planes = bounds[:-1] + self.thickness / 2
        n = len(self.thickness)
        self.walls = np.zeros(n)
        self.solid = np.zeros(n)
        self.sparse = np.zeros(n)
        self.outline = np.zeros(n)
        self.q = q
        widths = np.full(n, q.line_width)
        widths[0] = q.first_layer_width or q.line_width
        self.spacing = widths - self.thickness * (1 - np.pi / 4)

    def _density(self, interior: np.ndarray, outline: np.ndarray) -> np.ndarray:
        """Share of sparse infill that is plastic: the pattern's, but a region narrower than the
        pattern's line spacing still gets a line zig-zagging along it, anchored at both sides."""
        q = self.q
        nominal = q.infill * q.infill_overlap * PATTERN_PLASTIC.get(q.infill_pattern, 1.0)
        if q.infill <= 0:
            return np.zeros_like(interior)
        width = 2 * interior / np.maximum(outline, 1e-9)
        one_line = np.where(width > 0, self.spacing / np.maximum(width, 1e-9), 0.0)
        return np.clip(np.maximum(nominal, one_line), 0.0, 1.0)

    def add(self, body: trimesh.Trimesh) -> np.ndarray:
        """Fill one body's layers; returns its area per layer."""
        q, t = self.q, self.thickness
        area, outline = sections_at(body, self.planes)
        area = np.abs(area)
        # An inward offset by w loses w² per radian the outline turns: π·w² for each outer loop, given
        # back by each hole. A body of genus g has, in most layers, 1 − g more outer loops than holes.
        loops = max(1 - _genus(body), 0)
        wall = q.perimeters * self.spacing
        ring = np.clip(outline * wall - loops * np.pi * wall**2, 0.0, area)
        interior = area - ring
        up, down = facing_area(body, self.bounds)
        capped = within(up, q.top_layers - 1, 0) + within(down, 0, q.bottom_layers - 1)
        # On a slope the perimeters already cover part of the exposed band; the slicer's vertical
        # shell thickening gives some of it back (SLOPE_COVER fitted on bench.estimate).
        solid = np.clip(capped - SLOPE_COVER * ring, 0.0, interior) if q.top_layers or q.bottom_layers \
            else np.zeros_like(area)
        # The slicer measures a region inside the innermost perimeter's centre line, half a line wider.
        region = area - np.minimum(outline * (q.perimeters - 0.5) * self.spacing, area) if q.perimeters else area
        small = (interior > 0) & (region < q.solid_infill_below_area)
        solid = np.where(small, interior, solid)
        self.walls += ring * t
        self.solid += solid * t
        self.sparse += (interior - solid) * t * self._density(interior, outline)
        self.outline += outline
        return area


def _genus(body: trimesh.Trimesh) -> int:
    """Handles through a closed body (a ring has one); 0 for an open or odd mesh."""
    try:
        return max(0, (2 - int(body.euler_number)) // 2) if body.is_watertight else 0
    except (ValueError, IndexError):
        return 0


def quick_quote(objects: list[trimesh.Trimesh], settings: QuoteSettings | None = None,
                tools: list[int] | None = None) -> Quote:
    """``tools`` names each object's extruder when several print together (one purge per tool change)."""
    q = settings or QuoteSettings()
    material = q.material.upper()
    density = q.density_g_cm3 or DENSITY_G_CM3.get(material)
    if density is None:
        raise ValueError(f"unknown material {q.material!r}: give its density (known: {', '.join(DENSITY_G_CM3)})")
    if tools is not None and len(tools) != len(objects):
        raise ValueError(f"{len(tools)} tools given for {len(objects)} objects")
    vertices = np.vstack([m.vertices for m in objects])
    z0 = float(vertices[:, 2].min())
    bounds = layer_bounds(z0, float(vertices[:, 2].max()) - z0, q.layer_height, q.first_layer_height)
    layers = _Layers(bounds, q)
    present: dict[int, np.ndarray] = {}
    part = 0.0
    for i, mesh in enumerate(objects):
        part += abs(float(mesh.volume))
        for body in bodies(mesh):
            area = layers.add(body)
            tool = tools[i] if tools else 0
            present[tool] = present.get(tool, np.zeros(len(area), dtype=bool)) | (area > 0)
    first_h, first_s = float(layers.thickness[0]), float(layers.spacing[0])
    skirt = _skirt(vertices, z0, q, first_s, first_h) + _brim(objects, z0, q, first_s, first_h)
    support = 0.0
    if q.support:
        support = support_volume(objects, z0, layer_height=q.layer_height, width=q.support_width,
                                 threshold_deg=q.support_threshold_deg, spacing=q.support_spacing,
                                 interface_layers=q.support_interface_layers,
                                 interface_spacing=q.support_interface_spacing,
                                 buildplate_only=q.support_buildplate_only)
    purge, _ = tower_volume(tool_changes(present), layers.thickness, purge_mm3=q.purge_mm3 + q.ramming_mm3,
                            width=q.wipe_tower_width, brim_width=q.wipe_tower_brim,
                            spacing=spacing(q.line_width, q.layer_height))
    shell = float(layers.walls.sum() + layers.solid.sum())
    infill = float(layers.sparse.sum())
    volume = shell + infill + skirt + support + purge
    time_s = _time(q, material, layers, skirt + support + purge)
    return Quote(
        material=material, grams=volume / 1000.0 * density, volume_mm3=volume, shell_mm3=shell,
        infill_mm3=infill, skirt_mm3=skirt, support_mm3=support, purge_mm3=purge, part_volume_mm3=part,
        layers=len(layers.thickness), time_s=time_s,
    )


def _skirt(vertices: np.ndarray, z0: float, q: QuoteSettings, s: float, first_h: float) -> float:
    if q.skirt_loops == 0 or q.skirt_layers == 0:
        return 0.0
    near_bed = vertices[vertices[:, 2] <= z0 + first_h + (q.skirt_layers - 1) * q.layer_height + 1e-9]
    loop = perimeter(convex_hull(near_bed[:, :2])) + 2 * np.pi * (q.skirt_distance + q.brim_width)
    min_volume = q.skirt_min_filament_mm * np.pi * (q.filament_diameter / 2) ** 2
    first = loop * s * first_h
    # Loops added to reach the minimum filament are printed on every skirt layer, as PrusaSlicer does.
    loops = max(q.skirt_loops, int(np.ceil(min_volume / first)) if first > 0 else 0)
    return (first + loop * s * q.layer_height * (q.skirt_layers - 1)) * loops


def _brim(objects: list[trimesh.Trimesh], z0: float, q: QuoteSettings, s: float, first_h: float) -> float:
    """Loops around each object's first-layer outline, out to ``brim_width``."""
    if q.brim_width <= 0:
        return 0.0
    loops = int(q.brim_width / s + 1e-9)
    total = 0.0
    for mesh in objects:
        v = mesh.vertices
        if v[:, 2].min() > z0 + first_h:
            continue
        outline = perimeter(convex_hull(v[v[:, 2] <= z0 + first_h + 1e-9][:, :2]))
        total += sum(outline + 2 * np.pi * (k + 0.5) * s for k in range(loops)) * s * first_h
    return total


def _time(q: QuoteSettings, material: str, layers: _Layers, extra: float) -> float:
    """Per layer: its perimeters, solid and sparse infill, but never under the minimum layer time."""
    cross = spacing(q.line_width, q.layer_height) * q.layer_height
    limit = q.max_flow_mm3_s or MAX_FLOW_MM3_S.get(material, 10.0)

    def rate(speed: float) -> float:
        return min(speed * cross, limit)

    walls = layers.walls.copy()
    walls[0] += extra
    per_layer = (walls / rate(q.perimeter_speed) + layers.solid / rate(q.solid_speed)
                 + layers.sparse / rate(q.infill_speed)) / q.motion_efficiency
    # Slowing a small layer to the minimum layer time stops at the minimum print speed.
    path_mm = (walls + layers.solid + layers.sparse) / cross
    floor = np.minimum(q.min_layer_time_s, path_mm / q.min_print_speed) * q.layer_time_overrun
    return float(np.sum(np.maximum(per_layer, floor)))


def quick_quote_file(path: Path, settings: QuoteSettings | None = None, tools: list[int] | None = None) -> Quote:
    _, objects = load_objects(path)
    return quick_quote([m for _, m in objects], settings, tools)
