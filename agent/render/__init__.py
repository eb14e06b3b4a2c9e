"""Render nodes: Blender on the command line, and the GPUs it renders on.

Standard library, asyncio and structlog only: this runs on the same small agent as the
printer drivers.
"""
