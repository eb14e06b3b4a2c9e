"""How a render job is cut into tasks and which nodes may run them (pure functions)."""

from __future__ import annotations

import json

from hub.render.plan import chunks, derive_chunk, preview_frames, refusal, work_scale
from protocol.messages import Gpu, RenderCapabilities


def job(**fields):  # type: ignore[no-untyped-def]
    return {"engine": "CYCLES", "cycles_device": "CPU", "tags": "[]", "min_vram_mb": None, **fields}


def test_the_preview_is_the_first_middle_and_last_frame_once_each() -> None:
    assert preview_frames(1, 250) == [1, 125, 250]
    assert preview_frames(7, 8) == [7, 8]
    assert preview_frames(5, 5) == [5]


def test_chunks_cover_every_frame_once() -> None:
    assert chunks(1, 10, 4) == [(1, 4), (5, 8), (9, 10)]
    assert chunks(3, 3, 10) == [(3, 3)]


def test_a_derived_chunk_aims_at_the_target_task_length_but_keeps_every_node_busy() -> None:
    assert derive_chunk(frame_s=30.0, frames=1000, nodes=4, target_task_s=180) == 6
    assert derive_chunk(frame_s=0.02, frames=16, nodes=2, target_task_s=180) == 8  # tiny frames: spread, not one task
    assert derive_chunk(frame_s=900.0, frames=10, nodes=2, target_task_s=180) == 1


def test_work_scales_with_samples_and_pixels() -> None:
    assert work_scale(128, 100, 8, 25) == 16 * 16


def test_a_node_is_refused_for_what_it_lacks() -> None:
    cpu = RenderCapabilities(blender_version="3.4.1", engines=["CYCLES"], devices=["CPU"])
    gpu = RenderCapabilities(blender_version="4.1.0", engines=["CYCLES", "BLENDER_EEVEE_NEXT"],
                             devices=["CPU", "OPTIX"], gpus=[Gpu(index=0, name="RTX 3060", vram_mb=12000)])
    assert refusal(job(), cpu, []) is None
    assert refusal(job(engine="BLENDER_EEVEE_NEXT"), cpu, []) == "no BLENDER_EEVEE_NEXT"
    assert refusal(job(cycles_device="OPTIX"), cpu, []) == "no OPTIX device"
    assert refusal(job(cycles_device="OPTIX", min_vram_mb=16000), gpu, []) == "no GPU with 16000 MB"
    assert refusal(job(cycles_device="OPTIX", min_vram_mb=8000), gpu, []) is None
    assert refusal(job(tags=json.dumps(["studio-a"])), gpu, ["studio-b"]) == "lacks tags ['studio-a']"
    assert refusal(job(), None, []) == "not a render node"
