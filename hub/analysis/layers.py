"""A mesh cut into a slicer's layers: each layer's area and outline, and where surfaces face up or down.

Layers are as PrusaSlicer makes them: the first ``first_layer_height``
thick, then ``layer_height`` each, every one cut at its middle.
"""

from __future__ import annotations

import math

import numpy as np
import trimesh

_CHUNK = 4_000_000  # face × layer cells per numpy step, to bound memory on large meshes


def layer_bounds(z0: float, height: float, layer_height: float, first_layer_height: float | None = None) -> np.ndarray:
    """Boundaries of the layers from the bed (``z0``) to the top: ``len(layers) + 1`` heights."""
    first = first_layer_height or layer_height
    if height <= first:
        return np.array([z0, z0 + max(height, 1e-6)])
    rest = max(1, round((height - first) / layer_height))
    return z0 + np.concatenate([[0.0], first + layer_height * np.arange(rest + 1)])


def sections_at(mesh: trimesh.Trimesh, planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Area (mm²) and outline length (mm) of the mesh's slice at each plane height (ascending).

    Each triangle crossing a plane adds one oriented segment of the outline;
    the shoelace sum of the segments is the enclosed area, holes negative.
    """
    layers = len(planes)
    tri = mesh.triangles
    z = tri[:, :, 2]
    first = np.searchsorted(planes, z.min(axis=1), side="right")
    last = np.searchsorted(planes, z.max(axis=1), side="left") - 1
    spans = np.clip(last - first + 1, 0, None)
    face = np.repeat(np.arange(len(tri)), spans)
    layer = np.repeat(first, spans) + (np.arange(spans.sum()) - np.repeat(np.cumsum(spans) - spans, spans))
    plane = planes[layer]
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


def layer_sections(mesh: trimesh.Trimesh, z0: float, layer_height: float, layers: int) -> tuple[np.ndarray, np.ndarray]:
    """``sections_at`` for ``layers`` equal layers from ``z0``, cut at mid-layer as slicers do."""
    return sections_at(mesh, z0 + (np.arange(layers) + 0.5) * layer_height)


def facing_area(mesh: trimesh.Trimesh, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Area seen from above of the up-facing and of the down-facing surface, per layer.

    A face spanning several layers is shared among them by height. A flat
    top belongs to the layer it closes, a flat bottom to the layer it opens.
    """
    layers = len(bounds) - 1
    nz = mesh.face_normals[:, 2]
    projected = mesh.area_faces * np.abs(nz)
    z = mesh.triangles[:, :, 2]
    out = []
    for mask, nudge in ((nz > 1e-6, -1e-6), (nz < -1e-6, 1e-6)):
        lo, hi, value = z[mask].min(axis=1) + nudge, z[mask].max(axis=1) + nudge, projected[mask]
        below = np.zeros(layers + 1)
        step = max(1, _CHUNK // (layers + 1))
        for start in range(0, len(value), step):
            s = slice(start, start + step)
            span = np.maximum(hi[s] - lo[s], 1e-9)
            share = np.clip((bounds[None, :] - lo[s, None]) / span[:, None], 0.0, 1.0)
            below += value[s] @ share
        out.append(np.diff(below))
    return out[0], out[1]


def within(values: np.ndarray, layers_above: int, layers_below: int) -> np.ndarray:
    """Each layer's sum of ``values`` from ``layers_below`` layers under it to ``layers_above`` over it."""
    n = len(values)
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(n)
    hi = np.minimum(idx + layers_above + 1, n)
    lo = np.maximum(idx - layers_below, 0)
    return cumulative[hi] - cumulative[lo]


def spacing(width: float, height: float) -> float:
    """Centre-to-centre distance of neighbouring lines: the flat-sided oval a line squashes into."""
    return width - height * (1 - math.pi / 4)


def bodies(mesh: trimesh.Trimesh) -> list[trimesh.Trimesh]:
    """The mesh's connected pieces (faces sharing vertices), without scipy: min-label propagation."""
    faces = mesh.faces
    if len(faces) == 0:
        return []
    labels = np.arange(len(mesh.vertices))
    a = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    b = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    while True:
        low = np.minimum(labels[a], labels[b])
        before = labels.copy()
        np.minimum.at(labels, a, low)
        np.minimum.at(labels, b, low)
        labels = labels[labels]  # jump to the label's own label: few rounds even on long chains
        if np.array_equal(labels, before):
            break
    face_label = labels[faces[:, 0]]
    groups = np.unique(face_label)
    if len(groups) == 1:
        return [mesh]
    return [mesh.submesh([np.nonzero(face_label == g)[0]], append=True) for g in groups]
