"""Support material a slicer would add under overhangs, estimated from the mesh by vertical columns.

The part is sampled on a grid seen from above. Along each grid column the
surface crossings, sorted by height, alternate between entering the solid
(a down-facing face) and leaving it (an up-facing one). A down-facing
crossing that is too flat to print in the air needs a column of support
down to the surface below it or to the bed. The column is sparse
(``support_width / (support_spacing + support_width)`` of it is plastic, as
PrusaSlicer spaces its lines), with solid interface layers under the part
and, where it stands on the part, over it too.
"""

from __future__ import annotations

import math

import numpy as np
import trimesh

MAX_CELLS = 60_000
MAX_PAIRS = 3_000_000
CONTACT_MM = 0.2  # the gap left between support and the part above, PrusaSlicer's default


def auto_threshold_deg(layer_height: float, width: float) -> float:
    """A face flatter than this overhangs each layer by more than half a line: PrusaSlicer's automatic rule."""
    return math.degrees(math.atan2(layer_height, width / 2))


def _cells(triangles: np.ndarray, pitch: float, origin: np.ndarray,
           shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First grid column inside each triangle's extent, and how many columns across it spans (x, y)."""
    xy = triangles[:, :, :2]
    lo = np.floor((xy.min(axis=1) - origin) / pitch - 0.5).astype(int) + 1
    hi = np.floor((xy.max(axis=1) - origin) / pitch - 0.5).astype(int)
    lo, hi = np.maximum(lo, 0), np.minimum(hi, np.array(shape) - 1)
    return lo, hi, np.clip(hi[:, 0] - lo[:, 0] + 1, 0, None), np.clip(hi[:, 1] - lo[:, 1] + 1, 0, None)


def _pairs(triangles: np.ndarray, pitch: float, origin: np.ndarray, shape: tuple[int, int]) -> int:
    _, _, nx, ny = _cells(triangles, pitch, origin, shape)
    return int((nx * ny).sum())


def _hits(triangles: np.ndarray, normals: np.ndarray, z0: float, pitch: float, origin: np.ndarray,
          shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell, height, normal z) of every crossing of a grid column with a triangle."""
    lo, _, nx, ny = _cells(triangles, pitch, origin, shape)
    spans = nx * ny
    keep = (spans > 0) & (np.abs(normals[:, 2]) > 1e-9)
    face = np.repeat(np.nonzero(keep)[0], spans[keep])
    k = np.arange(len(face)) - np.repeat(np.cumsum(spans[keep]) - spans[keep], spans[keep])
    ix = lo[face, 0] + k // ny[face]
    iy = lo[face, 1] + k % ny[face]
    px = origin[0] + (ix + 0.5) * pitch
    py = origin[1] + (iy + 0.5) * pitch
    a, b, c = triangles[face, 0], triangles[face, 1], triangles[face, 2]
    v0x, v0y = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    v1x, v1y = c[:, 0] - a[:, 0], c[:, 1] - a[:, 1]
    wx, wy = px - a[:, 0], py - a[:, 1]
    det = v0x * v1y - v1x * v0y
    u = (wx * v1y - v1x * wy) / det
    v = (v0x * wy - wx * v0y) / det
    inside = (u >= 0) & (v >= 0) & (u + v <= 1)
    z = a[:, 2] + u * (b[:, 2] - a[:, 2]) + v * (c[:, 2] - a[:, 2])
    cell = ix * shape[1] + iy
    return cell[inside], z[inside], normals[face[inside], 2]


def support_volume(meshes: list[trimesh.Trimesh], z0: float, *, layer_height: float, width: float,
                   threshold_deg: float, spacing: float, interface_layers: int, interface_spacing: float,
                   buildplate_only: bool, sheath_loops: bool = True) -> float:
    """mm³ of support plastic under the parts' overhangs."""
    triangles = np.concatenate([m.triangles for m in meshes])
    normals = np.concatenate([m.face_normals for m in meshes])
    xy = triangles[:, :, :2].reshape(-1, 2)
    origin, extent = xy.min(axis=0), np.maximum(xy.max(axis=0) - xy.min(axis=0), 1e-3)
    pitch = max(0.25, math.sqrt(extent[0] * extent[1] / MAX_CELLS))
    while True:
        shape = (int(extent[0] // pitch) + 1, int(extent[1] // pitch) + 1)
        pairs = _pairs(triangles, pitch, origin, shape)
        if pairs <= MAX_PAIRS:
            break
        pitch *= math.sqrt(pairs / MAX_PAIRS) * 1.05  # coarser columns for a finely detailed mesh
    cell, z, nz = _hits(triangles, normals, z0, pitch, origin, shape)
    if len(cell) == 0:
        return 0.0
    order = np.lexsort((z, cell))
    cell, z, nz = cell[order], z[order], nz[order]
    threshold = threshold_deg if threshold_deg > 0 else auto_threshold_deg(layer_height, width)
    flat_enough = -nz > math.cos(math.radians(threshold))
    needs = flat_enough & (z > z0 + layer_height)
    same_cell_below = np.concatenate([[False], cell[1:] == cell[:-1]])
    floor = np.where(same_cell_below, np.concatenate([[z0], z[:-1]]), z0)
    on_part = same_cell_below & np.concatenate([[False], nz[:-1] > 0])
    if buildplate_only:
        needs &= ~on_part
    gap = np.maximum(z - floor - CONTACT_MM, 0.0)[needs]
    on_part = on_part[needs]
    body = width / (spacing + width) if spacing > 0 else 1.0
    face = width / (interface_spacing + width) if interface_spacing > 0 else 1.0
    interface = np.minimum(gap, interface_layers * layer_height * np.where(on_part, 2, 1))
    per_cell = gap * body + interface * (face - body)
    # The sheath: one loop around the support on every layer, i.e. a line over the columns' sides.
    height = np.zeros(shape[0] * shape[1])
    np.add.at(height, cell[needs], gap)
    height = np.pad(height.reshape(shape), 1)
    sides = sum(np.maximum(height[1:-1, 1:-1] - np.roll(height, shift, axis)[1:-1, 1:-1], 0.0).sum()
                for axis in (0, 1) for shift in (1, -1))
    sheath = sides * pitch * width if sheath_loops else 0.0
    return float(per_cell.sum() * pitch * pitch + sheath)
