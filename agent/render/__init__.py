"""Render nodes: Blender on the command line, and the GPUs it renders on.

Standard library, asyncio and structlog only: this runs on the same small agent as the
printer drivers.
"""

from agent.render.blender_cli import (
    BlenderRun,
    BlenderUnavailable,
    FrameProgress,
    FrameSaved,
    FrameStarted,
    Outcome,
    RenderEvent,
    RunResult,
)
from agent.render.command import RenderSpec, build_command
from agent.render.capabilities import blender_capabilities
from agent.render.gpu import NvidiaSmiReading, read_gpus
from agent.render.outputs import sha256_file
from agent.render.progress import LineKind, ProgressUpdate, parse_line

__all__ = [
    "BlenderRun", "BlenderUnavailable", "FrameProgress", "FrameSaved", "FrameStarted", "NvidiaSmiReading",
    "LineKind", "Outcome", "ProgressUpdate", "RenderEvent", "RenderSpec", "RunResult",
    "blender_capabilities", "build_command", "parse_line", "read_gpus", "sha256_file",
]
