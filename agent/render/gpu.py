"""NVIDIA GPU readings from ``nvidia-smi``, when the machine has one.

``nvidia-smi`` is the one interface every NVIDIA driver ships; NVML bindings
would be another dependency on a Raspberry Pi that has no GPU. A machine
without it (or with a broken driver) simply has no GPUs: render nodes
report what they have, and a missing GPU is not an agent error.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass

import structlog

log = structlog.get_logger("farmhand.render")

QUERY_FIELDS = "index,name,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw"
_NUMERIC_AFTER_NAME = 5


@dataclass(frozen=True, slots=True)
class NvidiaSmiReading:
    """One row of nvidia-smi's answer: one GPU; a reading the driver does not support (``[N/A]``) is None."""

    index: int
    name: str
    memory_total_mb: float | None
    memory_used_mb: float | None
    utilization_pct: float | None
    temperature_c: float | None
    power_w: float | None


def _number(text: str) -> float | None:
    text = text.strip()
    if text.startswith("["):  # "[N/A]", "[Not Supported]"
        return None
    return float(text)


def parse_query(text: str) -> tuple[list[NvidiaSmiReading], int]:
    """Readings from ``nvidia-smi --query-gpu=QUERY_FIELDS --format=csv,noheader,nounits``.

    Returns the readings and how many lines could not be read; those are
    skipped so that one odd GPU does not hide the others.
    """
    readings: list[NvidiaSmiReading] = []
    bad = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(",")
        try:
            if len(parts) < 2 + _NUMERIC_AFTER_NAME:
                raise ValueError(f"{len(parts)} fields")
            # The CSV is not quoted: a name with a comma spans several parts.
            name = ",".join(parts[1:-_NUMERIC_AFTER_NAME]).strip()
            total, used, util, temp, power = (_number(p) for p in parts[-_NUMERIC_AFTER_NAME:])
            readings.append(NvidiaSmiReading(int(parts[0]), name, total, used, util, temp, power))
        except ValueError as exc:
            bad += 1
            log.warning("nvidia_smi_line_unreadable", line=line[:200], error=str(exc))
    return readings, bad


async def read_gpus(nvidia_smi: str | None = None, timeout_s: float = 10.0) -> list[NvidiaSmiReading]:
    """Current readings of every NVIDIA GPU; empty when there is no ``nvidia-smi`` or it fails."""
    exe = nvidia_smi or shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        proc = await asyncio.create_subprocess_exec(
            exe, f"--query-gpu={QUERY_FIELDS}", "--format=csv,noheader,nounits",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        log.warning("nvidia_smi_unavailable", exe=exe, error=str(exc))
        return []
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        # A wedged driver makes nvidia-smi hang; a render node must not hang with it.
        log.warning("nvidia_smi_timeout", exe=exe, timeout_s=timeout_s)
        return []
    finally:
        if proc.returncode is None:
            proc.kill()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        log.warning("nvidia_smi_failed", exe=exe, returncode=proc.returncode, output=text.strip()[-300:])
        return []
    readings, _ = parse_query(text)
    return readings
