"""What this render node can do: Blender's version, its engines, and the GPUs.

Asking Blender means starting it (about a second, longer on a Pi or a cold
disk), so the answer is cached per executable for the life of the process;
``refresh=True`` asks again, e.g. after Blender was upgraded.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
from typing import Any

import structlog

from agent.render.blender_cli import BlenderUnavailable
from agent.render.gpu import read_gpus

log = structlog.get_logger("farmhand.render")

_MARKER = "FARMHAND_CAPS "

# Runs inside Blender. A constant: nothing from outside is ever formatted into it.
# Engines are found by trying to select them, because the engine enum lists
# its add-on engines only on a scene, and Cycles' GPU back-ends the same way
# because the build decides which exist.
_PROBE = """
import bpy, json
render = bpy.context.scene.render
candidates = ["BLENDER_EEVEE", "BLENDER_EEVEE_NEXT", "BLENDER_WORKBENCH", "CYCLES"]
candidates += [cls.bl_idname for cls in bpy.types.RenderEngine.__subclasses__()]
engines = []
for name in dict.fromkeys(candidates):
    try:
        render.engine = name
    except TypeError:
        continue
    engines.append(name)
backends, cycles_devices = [], []
addon = bpy.context.preferences.addons.get("cycles")
if addon is not None:
    prefs = addon.preferences
    for backend in ("CUDA", "OPTIX", "HIP", "ONEAPI", "METAL"):
        try:
            prefs.compute_device_type = backend
        except TypeError:
            continue
        backends.append(backend)
        prefs.refresh_devices()
        for dev in prefs.devices:
            cycles_devices.append({"type": dev.type, "name": dev.name})
print("FARMHAND_CAPS " + json.dumps({
    "version": ".".join(str(n) for n in bpy.app.version),
    "version_string": bpy.app.version_string,
    "engines": engines,
    "cycles_backends": backends,
    "cycles_devices": cycles_devices,
}), flush=True)
"""

_cache: dict[str, dict[str, Any]] = {}


async def blender_capabilities(
    blender: str = "blender", *, refresh: bool = False, timeout_s: float = 120.0
) -> dict[str, Any]:
    """This node's render capabilities (a fresh copy of the cached answer).

    ``{"blender": path, "version": "3.4.1", "version_string": ..., "engines": [...],
    "cycles_backends": ["CUDA", ...], "cycles_gpus": [{"type": "OPTIX", "name": ...}],
    "devices": [{"type": "CPU", ...}, {"type": "GPU", "vendor": "NVIDIA", "vram_mb": ...}]}``.
    ``cycles_backends`` are those this Blender was built with, ``cycles_gpus``
    the GPUs Cycles found with them; ``devices`` has the CPU always and each
    NVIDIA GPU that ``nvidia-smi`` reports.
    """
    exe = shutil.which(blender)
    if exe is None:
        raise BlenderUnavailable(f"Blender not found: {blender!r} is not an executable on PATH")
    if refresh or exe not in _cache:
        _cache[exe] = await _probe(exe, timeout_s)
    return copy.deepcopy(_cache[exe])


async def _probe(exe: str, timeout_s: float) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        exe, "-b", "--factory-startup", "--python-exit-code", "2", "--python-expr", _PROBE,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        raise BlenderUnavailable(f"{exe} did not answer within {timeout_s:g} s") from None
    finally:
        # Timed out, or the caller gave up waiting: this Blender is not wanted either way.
        if proc.returncode is None:
            proc.kill()
    text = out.decode(errors="replace")
    found = [line[len(_MARKER):] for line in text.splitlines() if line.startswith(_MARKER)]
    if proc.returncode != 0 or not found:
        tail = "\n".join(text.strip().splitlines()[-15:])
        raise BlenderUnavailable(f"{exe} failed to report its capabilities (exit {proc.returncode}):\n{tail}")
    probed = json.loads(found[-1])

    cycles_devices = probed.pop("cycles_devices")
    cpu_names = [d["name"] for d in cycles_devices if d["type"] == "CPU"]
    # Each back-end's list repeats the CPU; the GPUs are what tells --cycles-device choices apart.
    gpus = [d for d in cycles_devices if d["type"] != "CPU"]
    probed["cycles_gpus"] = [d for i, d in enumerate(gpus) if d not in gpus[:i]]
    devices: list[dict[str, Any]] = [
        {"type": "CPU", "name": cpu_names[0] if cpu_names else "CPU", "threads": os.cpu_count()}
    ]
    for gpu in await read_gpus():
        devices.append({
            "type": "GPU", "vendor": "NVIDIA", "index": gpu.index, "name": gpu.name,
            "vram_mb": gpu.memory_total_mb,
        })
    caps = {"blender": exe, **probed, "devices": devices}
    log.info("blender_capabilities", blender=exe, version=caps["version"], engines=caps["engines"],
             gpus=len(devices) - 1)
    return caps
