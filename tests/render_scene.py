"""Makes tiny .blend files for the render tests with Blender's own Python.

A scene built at test time (cube, camera, sun) instead of a binary fixture in
git: it always matches the Blender installed, and it shows what the tests render.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

# Runs inside Blender; its numbers arrive as arguments after "--", never formatted into the code.
_BUILD = """
import sys
import bpy
out, width, height, samples, frame_start, frame_end = sys.argv[sys.argv.index("--") + 1:]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
bpy.ops.mesh.primitive_cube_add(size=2)
camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
camera.location = (6.0, -6.0, 4.0)
camera.rotation_euler = (1.1, 0.0, 0.785)
scene.collection.objects.link(camera)
scene.camera = camera
sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
scene.collection.objects.link(sun)
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = int(samples)
scene.cycles.use_denoising = False  # Debian's Blender is built without a denoiser
scene.render.resolution_x = int(width)
scene.render.resolution_y = int(height)
scene.render.resolution_percentage = 100
scene.frame_start = int(frame_start)
scene.frame_end = int(frame_end)
bpy.ops.file.pack_all()
bpy.ops.wm.save_as_mainfile(filepath=out)
"""


def blender_or_skip() -> str:
    """Blender's path; the test is skipped (failed under CI) when it is not installed."""
    from .prerequisites import program

    return program("blender")


def make_scene(
    path: Path, *, blender: str = "blender", width: int = 64, height: int = 48, samples: int = 8,
    frame_start: int = 1, frame_end: int = 3,
) -> Path:
    """Writes a cube + camera + sun scene rendered by Cycles on the CPU to ``path``."""
    args = [str(path), str(width), str(height), str(samples), str(frame_start), str(frame_end)]
    done = subprocess.run(
        [blender, "-b", "--factory-startup", "--python-exit-code", "1", "--python-expr", _BUILD, "--", *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )
    if done.returncode != 0 or not path.is_file():
        raise RuntimeError(f"Blender could not build the test scene:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return path
