"""Small plane geometry shared by the analyses: boxes, convex hulls, fitting a footprint on a bed."""

from __future__ import annotations

import math
import numpy as np
from pydantic import BaseModel, ConfigDict

# Angles tried beyond the hull's own edge directions; 0.25° steps cost nothing next to loading a mesh.
_EXTRA_ANGLES = 720


class BoundingBox(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min: tuple[float, float, float]
    max: tuple[float, float, float]

    @property
    def size(self) -> tuple[float, float, float]:
        return (self.max[0] - self.min[0], self.max[1] - self.min[1], self.max[2] - self.min[2])


def convex_hull(points: np.ndarray) -> list[tuple[float, float]]:
    """Counter-clockwise hull of ``(n, 2)`` points (monotone chain), without repeating the first point.

    Points inside the octagon of extreme points cannot be on the hull; dropping
    them with numpy first leaves the Python loop a few percent of a large mesh.
    """
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    if len(pts) > 64:
        directions = np.array([(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)], dtype=float)
        extreme = np.argmax(pts @ directions.T, axis=0)
        # Keep the counter-clockwise order of the directions; a point may be extreme twice.
        octagon = pts[[i for k, i in enumerate(extreme) if i != extreme[k - 1]]]
        if len(octagon) >= 3:
            inside = np.ones(len(pts), dtype=bool)
            for a, b in zip(octagon, np.roll(octagon, -1, axis=0)):
                inside &= (b[0] - a[0]) * (pts[:, 1] - a[1]) - (b[1] - a[1]) * (pts[:, 0] - a[0]) > 0
            pts = pts[~inside]
    ordered = sorted(set(map(tuple, pts.tolist())))
    if len(ordered) <= 2:
        return ordered

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for p in seq:
            while len(out) >= 2:
                (ax, ay), (bx, by) = out[-2], out[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) > 0:
                    break
                out.pop()
            out.append(p)
        return out

    lower, upper = half(ordered), half(ordered[::-1])
    return lower[:-1] + upper[:-1]


def perimeter(polygon: list[tuple[float, float]]) -> float:
    return sum(math.dist(polygon[i - 1], polygon[i]) for i in range(len(polygon))) if len(polygon) > 1 else 0.0


def fits_rotated(hull: list[tuple[float, float]], width: float, depth: float) -> bool:
    """Whether the footprint fits a ``width`` × ``depth`` rectangle when turned about Z.

    The tightest fit of a convex polygon usually lines one hull edge up with a
    side of the bed; other angles are sampled finely for the cases it does not.
    """
    if not hull:
        return True
    pts = np.asarray(hull, dtype=float)
    edges = np.roll(pts, -1, axis=0) - pts
    angles = np.concatenate([np.arctan2(edges[:, 1], edges[:, 0]), np.linspace(0, np.pi, _EXTRA_ANGLES, endpoint=False)])
    c, s = np.cos(angles), np.sin(angles)
    along = pts[:, :1] * c + pts[:, 1:] * s
    across = pts[:, 1:] * c - pts[:, :1] * s
    w = along.max(axis=0) - along.min(axis=0)
    d = across.max(axis=0) - across.min(axis=0)
    eps = 1e-6
    straight = (w <= width + eps) & (d <= depth + eps)
    turned = (d <= width + eps) & (w <= depth + eps)
    return bool(np.any(straight | turned))
