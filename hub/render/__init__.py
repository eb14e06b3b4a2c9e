"""Render jobs: a .blend split into frame-range tasks for the farm's Blender nodes (see ``farm``)."""

from .farm import RenderFarm

__all__ = ["RenderFarm"]
