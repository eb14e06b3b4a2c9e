"""How a render job becomes tasks, and which nodes may run them: pure functions, no I/O."""

from __future__ import annotations

import json
import math
from typing import Any

from protocol.messages import RenderCapabilities


def preview_frames(start: int, end: int) -> list[int]:
    """First, middle and last frame: enough to see the shot and to time it at its start and end."""
    return sorted({start, (start + end) // 2, end})


def chunks(start: int, end: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size - 1, end)) for s in range(start, end + 1, size)]


def work_scale(samples: int, resolution_pct: int, from_samples: int, from_resolution_pct: int) -> float:
    """How much longer a frame takes at one quality than at another: path tracing is linear in
    samples times pixels, and pixels go with the square of the resolution percentage."""
    return (samples / from_samples) * (resolution_pct / from_resolution_pct) ** 2


def derive_chunk(frame_s: float, frames: int, nodes: int, target_task_s: float) -> int:
    """Frames per task: about ``target_task_s`` of rendering, but never so many that nodes sit idle."""
    by_time = max(1, round(target_task_s / max(frame_s, 1e-3)))
    spread = math.ceil(frames / max(1, nodes))
    return max(1, min(by_time, spread))


def refusal(job: dict[str, Any], render: RenderCapabilities | None, capabilities: list[str]) -> str | None:
    """Why a device cannot run this job's tasks, or None when it can."""
    if render is None:
        return "not a render node"
    if job["engine"] not in render.engines:
        return f"no {job['engine']}"
    if job["cycles_device"] not in render.devices:
        return f"no {job['cycles_device']} device"
    missing = set(json.loads(job["tags"])) - set(capabilities)
    if missing:
        return f"lacks tags {sorted(missing)}"
    need = job["min_vram_mb"]
    if need and job["cycles_device"] != "CPU" and not any(g.vram_mb >= need for g in render.gpus):
        return f"no GPU with {need} MB"
    return None
