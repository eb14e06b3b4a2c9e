"""A picture of each part for the paper: the G-code's embedded thumbnail, or a shaded view of the mesh."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import os
import tempfile
from pathlib import Path, PurePath

import numpy as np
import trimesh
from PIL import Image, ImageDraw

from ..file_analysis import FileAnalyses
from ..api import ApiProblem

SIZE = 240
LIGHT = np.array([0.4, -0.5, 0.77])


def mesh_view(path: str, name: str, size: int = SIZE) -> bytes:
    """An isometric view, faces painted back to front and shaded by their angle to a light."""
    with tempfile.TemporaryDirectory(prefix="farmhand-thumb-") as tmp:
        link = Path(tmp) / f"model{PurePath(name.lower()).suffix}"
        os.symlink(path, link)
        mesh = trimesh.load(link, force="mesh")
    # Turn 45° about Z, then tilt 35° towards the viewer: the usual isometric look.
    rot = trimesh.transformations.rotation_matrix(np.radians(-55), [1, 0, 0]) @ \
        trimesh.transformations.rotation_matrix(np.radians(45), [0, 0, 1])
    v = trimesh.transform_points(mesh.vertices, rot)
    tri = v[mesh.faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    lengths = np.linalg.norm(normals, axis=1)
    keep = (normals[:, 2] > 0) & (lengths > 0)
    tri, normals = tri[keep], normals[keep] / lengths[keep, None]
    lo, hi = v[:, :2].min(axis=0), v[:, :2].max(axis=0)
    scale = (size * 0.9) / max(float((hi - lo).max()), 1e-9)
    offset = (size - (hi - lo) * scale) / 2
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    shade = np.clip(normals @ (LIGHT / np.linalg.norm(LIGHT)), 0.15, 1.0)
    for i in np.argsort(tri[:, :, 2].mean(axis=1)):
        xy = (tri[i, :, :2] - lo) * scale + offset
        level = int(60 + 170 * shade[i])
        draw.polygon([(x, size - y) for x, y in xy], fill=(level // 3, level // 2 + 30, level))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


class Thumbnails:
    def __init__(self, analyses: FileAnalyses) -> None:
        self.analyses = analyses
        self._made: dict[str, bytes | None] = {}

    async def png(self, sha: str) -> bytes | None:
        """PNG bytes, or None when the file gives no picture (refused, or unreadable as a mesh)."""
        if sha in self._made:
            return self._made[sha]
        try:
            kind, analysis = await self.analyses.body(sha)
        except ApiProblem:
            return None
        picture: bytes | None = None
        if kind == "gcode":
            pngs = [t for t in analysis.get("thumbnails", []) if t["format"] == "PNG"]
            if pngs:
                # The analysis stores bytes as pydantic writes them: URL-safe base64.
                best = max(pngs, key=lambda t: t["width"] * t["height"])["data"]
                with contextlib.suppress(binascii.Error, ValueError, OSError):
                    data = base64.urlsafe_b64decode(best)
                    Image.open(io.BytesIO(data)).verify()  # a slicer's broken picture must not break the PDF
                    picture = data
        else:
            file = self.analyses.files.get(sha)
            try:
                picture = await asyncio.to_thread(mesh_view, str(self.analyses.files.path(sha)), file["name"])
            except (ValueError, IndexError):
                picture = None
        if len(self._made) > 256:  # content-addressed, so forgetting costs only a redraw
            self._made.clear()
        self._made[sha] = picture
        return picture
