"""Parallel efficiency of the render farm: N agents on this machine, real Blender on the CPU.

    python -m bench.render_farm            # 2 nodes, 48 frames in tasks of 4
    python -m bench.render_farm --quick    # 2 nodes, 16 frames in tasks of 4 (under a minute)

A hub, a private Mosquitto and N agents (each with one Blender device) render
a generated scene (cube, camera, sun; 160x120, Cycles, 96 samples). Each
Blender gets one thread (``-t 1``, through a wrapper: the render command has
no thread setting yet), so two nodes on two cores do not fight over them.

    ideal        = sum of the agents' task times / N
    efficiency   = ideal / wall (job started → job finished, as the hub saw it)
    overhead     = (N x wall - sum of task times) / tasks: what each task cost
                   beyond its own run — dispatch, MQTT, download, idle nodes

The last line printed is one JSON object with the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import stat
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from protocol.logs import configure
from tests.conftest import PrivateMosquitto
from tests.render_kit import RenderRig
from tests.render_scene import make_scene

WIDTH, HEIGHT, SAMPLES = 160, 120, 96


def single_thread_blender(folder: Path, blender: str) -> Path:
    path = folder / "blender-1-thread"
    path.write_text(f'#!/bin/sh\nexec {blender} -t 1 "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


async def run(nodes: int, frames: int, chunk: int, work: Path) -> dict[str, float]:
    blender = shutil.which("blender")
    if blender is None:
        sys.exit("blender is not installed (scripts/setup-system.sh installs it)")
    scene = make_scene(work / "bench.blend", blender=blender, width=WIDTH, height=HEIGHT, samples=SAMPLES,
                       frame_end=frames)
    wrapper = str(single_thread_blender(work, blender))
    broker = PrivateMosquitto(work)
    broker.start()
    try:
        async with RenderRig(work, broker.url, [wrapper] * nodes) as rig:
            blend = await rig.upload_blend(scene)
            submitted = time.monotonic()
            job_id = (await rig.submit(blend_sha256=blend, frame_start=1, frame_end=frames, samples=SAMPLES,
                                       resolution_pct=100, preview=False, chunk_size=chunk))["jobs"][0]["id"]
            while (job := await rig.job(job_id))["state"] not in ("completed", "failed", "cancelled"):
                eta = f"{job['eta_s']:.0f} s" if job["eta_s"] is not None else "?"
                running = sum(t["state"] == "running" for t in job["tasks"])
                print(f"  {job['frames_done']:3d}/{job['frames_total']} frames  {running} tasks running  "
                      f"ETA {eta}  ({time.monotonic() - submitted:.0f} s)", flush=True)
                await asyncio.sleep(1.0)
            if job["state"] != "completed":
                sys.exit(f"render job {job['state']}: {job['error']}")
            dispatcher = rig.hub.render.dispatcher
            dispatch_ms = dispatcher.pass_s / max(1, dispatcher.assignments) * 1000
    finally:
        broker.stop()
    wall = (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()
    task_s = [t["duration_s"] for t in job["tasks"]]
    ideal = sum(task_s) / nodes
    return {
        "nodes": nodes, "frames": frames, "tasks": len(task_s), "chunk_size": chunk,
        "scene": f"{WIDTH}x{HEIGHT} Cycles CPU {SAMPLES} samples, 1 thread per Blender",
        "wall_s": round(wall, 3), "sum_task_s": round(sum(task_s), 3), "ideal_s": round(ideal, 3),
        "mean_frame_s": job["mean_frame_s"],
        "parallel_efficiency": round(ideal / wall, 4),
        "overhead_ms_per_task": round((nodes * wall - sum(task_s)) / len(task_s) * 1000, 1),
        "dispatch_ms_per_task": round(dispatch_ms, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16 frames: under a minute")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--frames", type=int, help="default 48 (16 with --quick)")
    parser.add_argument("--chunk", type=int, default=4, help="frames per task")
    args = parser.parse_args()
    frames = args.frames or (16 if args.quick else 48)
    configure(level="warning")
    print(f"render farm: {args.nodes} nodes, {frames} frames, {args.chunk} per task", flush=True)
    with tempfile.TemporaryDirectory(prefix="farmhand-bench-") as tmp:
        result = asyncio.run(run(args.nodes, frames, args.chunk, Path(tmp)))
    print(f"wall {result['wall_s']} s, ideal {result['ideal_s']} s (sum of task times / {args.nodes}): "
          f"efficiency {result['parallel_efficiency']:.1%}, overhead {result['overhead_ms_per_task']} ms per task")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
