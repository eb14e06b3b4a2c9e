"""Slicing with the PrusaSlicer command line, as an asyncio subprocess the hub can time out and cancel.

PrusaSlicer's CLI needs no display for ``--export-gcode``. Each slice runs in
its own process group so that a timeout or a cancelled job kills the slicer
and anything it started, never the hub.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import structlog
from pydantic import BaseModel, ConfigDict

from hub.analysis.gcode import GcodeAnalysis, analyze_gcode
from hub.analysis.machines import MachineModel, load_machine

log = structlog.get_logger("farmhand.slicer")

PROFILES_DIR = Path(__file__).resolve().parent.parent / "slicing-profiles"
_OPTION = re.compile(r"^[a-z][a-z0-9_]*$")
_TAIL_CHARS = 4000


class SlicerError(RuntimeError):
    """The slicer failed; the text carries the end of its own output, verbatim."""


class SlicerTimeout(SlicerError):
    pass


class SliceResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    gcode: Path
    analysis: GcodeAnalysis
    slicer_s: float
    command: list[str]


def slicer_binary() -> str:
    return os.environ.get("FARMHAND_PRUSA_SLICER", "prusa-slicer")


def profile_names(kind: str) -> list[str]:
    """Available ``"filament"``, ``"quality"`` or ``"printer"`` layers."""
    return sorted(p.stem for p in (PROFILES_DIR / kind).glob("*.ini"))


def _machine_keys(m: MachineModel) -> dict[str, str]:
    """The machine model as PrusaSlicer keys; values are "normal,silent" pairs and we plan normal mode only."""
    bv = m.build_volume

    def pair(v: float) -> str:
        return f"{v:g},{v:g}"

    keys = {
        "printer_technology": "FFF",
        "gcode_flavor": "marlin2",
        "machine_limits_usage": "emit_to_gcode",
        "silent_mode": "0",
        "remaining_times": "1",
        "bed_shape": f"0x0,{bv.x:g}x0,{bv.x:g}x{bv.y:g},0x{bv.y:g}",
        "max_print_height": f"{bv.z:g}",
        "nozzle_diameter": f"{m.nozzle_diameter:g}",
        "filament_diameter": f"{m.filament_diameter:g}",
        "machine_max_acceleration_extruding": pair(m.acceleration.print),
        "machine_max_acceleration_retracting": pair(m.acceleration.retract),
        "machine_max_acceleration_travel": pair(m.acceleration.travel),
        "machine_min_extruding_rate": pair(m.min_extruding_rate),
        "machine_min_travel_rate": pair(m.min_travel_rate),
    }
    for axis in "xyze":
        keys[f"machine_max_feedrate_{axis}"] = pair(getattr(m.max_feedrate, axis))
        keys[f"machine_max_acceleration_{axis}"] = pair(getattr(m.max_acceleration, axis))
        keys[f"machine_max_jerk_{axis}"] = pair(getattr(m.jerk, axis))
    return keys


def _ini_keys(path: Path) -> dict[str, str]:
    keys = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raise ValueError(f"{path}:{n}: expected 'key = value'")
        keys[key.strip()] = value.strip()
    return keys


def _layer(kind: str, name: str, layer_dirs: Sequence[Path]) -> Path:
    for root in (*layer_dirs, PROFILES_DIR):
        path = root / kind / f"{name}.ini"
        if path.is_file():
            return path
    known = sorted({p.stem for root in (*layer_dirs, PROFILES_DIR) for p in (root / kind).glob("*.ini")})
    raise ValueError(f"no {kind} profile {name!r} (known: {', '.join(known)})")


def compose_profile(machine: str | MachineModel, material: str, quality: str = "0.20mm", *, out_dir: Path,
                    layer_dirs: Sequence[Path] = ()) -> Path:
    """Join machine model, printer, filament and quality layers into one INI under ``out_dir``.

    ``layer_dirs`` hold operators' layers (``<kind>/<name>.ini``), looked up
    before the shipped ones. The file name names the three choices, and its
    content depends only on them, so composing again gives the same file.
    """
    m = machine if isinstance(machine, MachineModel) else load_machine(machine)
    layers = [_layer("printer", m.id, layer_dirs), _layer("filament", material, layer_dirs),
              _layer("quality", quality, layer_dirs)]
    keys = _machine_keys(m)
    for path in layers:
        keys.update(_ini_keys(path))  # PrusaSlicer refuses a key given twice: later layers replace
    text = f"# {m.id} + {material} + {quality}, composed by Farmhand\n"
    text += "".join(f"{k} = {v}\n" for k, v in keys.items())
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{m.id}_{material}_{quality}.ini"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    return out


def _ini_value(value: str) -> str:
    """PrusaSlicer INI values are one line; G-code snippets keep their line breaks as ``\\n``."""
    return value.replace("\r", "").replace("\n", "\\n")


def _tail(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    return text[-_TAIL_CHARS:].strip()


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    await proc.wait()


async def slice_mesh(
    mesh: Path,
    profile_ini: Path | Sequence[Path],
    out: Path,
    *,
    timeout_s: float,
    extra: dict[str, str] | None = None,
    machine: MachineModel | None = None,
) -> SliceResult:
    """Slice ``mesh`` to G-code at ``out`` and analyse the result.

    ``extra`` overrides profile keys (``{"fill_density": "20%"}``). ``machine``
    gives the estimator its starting limits; the G-code's own limits override them.
    Raises ``SlicerError`` with the slicer's output, ``SlicerTimeout`` after
    ``timeout_s``; on cancellation the slicer is killed before this returns.
    """
    if not mesh.is_file():
        raise SlicerError(f"{mesh}: no such model file")
    profiles = [profile_ini] if isinstance(profile_ini, Path) else list(profile_ini)
    cmd = [slicer_binary(), "--export-gcode", "--loglevel", "1"]
    for p in profiles:
        if not p.is_file():
            raise SlicerError(f"{p}: no such profile")
        cmd += ["--load", str(p)]
    for key in extra or {}:
        if not _OPTION.match(key):
            raise ValueError(f"not a slicer option name: {key!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    overrides = out.with_name(out.name + ".extra.ini")
    if extra:
        # A file loaded last rather than --key=value arguments: empty and multi-line values survive it.
        overrides.write_text("".join(f"{k} = {_ini_value(v)}\n" for k, v in extra.items()))
        cmd += ["--load", str(overrides)]
    cmd += ["--output", str(partial), str(mesh)]
    try:
        return await _run(cmd, mesh, out, partial, timeout_s, machine)
    finally:
        overrides.unlink(missing_ok=True)


async def _run(cmd: list[str], mesh: Path, out: Path, partial: Path, timeout_s: float,
               machine: MachineModel | None) -> SliceResult:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL, start_new_session=True, env=env,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        await _kill_group(proc)
        partial.unlink(missing_ok=True)
        log.warning("slice_timeout", mesh=str(mesh), timeout_s=timeout_s)
        raise SlicerTimeout(f"slicing {mesh.name} took longer than {timeout_s:g} s; the slicer was killed") from None
    except asyncio.CancelledError:
        await _kill_group(proc)
        partial.unlink(missing_ok=True)
        raise
    slicer_s = time.monotonic() - started
    if proc.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        output = "\n".join(t for t in (_tail(stderr), _tail(stdout)) if t)
        log.warning("slice_failed", mesh=str(mesh), rc=proc.returncode)
        rc = proc.returncode or 0
        how = f"died of {signal.Signals(-rc).name}" if rc < 0 else f"exited with {rc}"
        raise SlicerError(f"slicer {how} for {mesh.name}:\n{output}")
    partial.replace(out)
    analysis = await asyncio.to_thread(analyze_gcode, out, machine)
    log.info("sliced", mesh=str(mesh), gcode=str(out), slicer_s=round(slicer_s, 2),
             estimate_s=round(analysis.estimate.total_s))
    return SliceResult(gcode=out, analysis=analysis, slicer_s=slicer_s, command=cmd)
