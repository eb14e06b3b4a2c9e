"""The render tests' scene (built by farmhand.scene) and their Blender prerequisite."""

from __future__ import annotations

from farmhand.scene import make_scene  # noqa: F401 - the tests build their scenes with it


def blender_or_skip() -> str:
    """Blender's path; the test is skipped (failed under CI) when it is not installed."""
    from .prerequisites import program

    return program("blender")


