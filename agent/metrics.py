"""Host metrics (CPU, memory, disk, load, temperature, uptime) read with psutil, and GPUs from nvidia-smi."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import structlog

from protocol.messages import GpuReading, HostMetrics

log = structlog.get_logger("farmhand.agent.metrics")

# Sensor names of the CPU on a Raspberry Pi, Intel and AMD machines, best first.
_CPU_SENSORS = ("cpu_thermal", "cpu-thermal", "coretemp", "k10temp", "zenpower", "soc_thermal", "acpitz")


def cpu_temperature() -> float | None:
    read = getattr(psutil, "sensors_temperatures", None)  # absent on some platforms
    if read is None:
        return None
    try:
        sensors = read()
    except OSError:
        return None
    for name in (*_CPU_SENSORS, *sorted(sensors)):
        readings = sensors.get(name)
        if readings:
            return round(readings[0].current, 1)
    return None


def collect(storage_dir: Path) -> HostMetrics:
    """One reading. CPU percent is since the previous call (the first call primes it)."""
    return HostMetrics(
        cpu_pct=psutil.cpu_percent(interval=None),
        mem_pct=psutil.virtual_memory().percent,
        disk_pct=psutil.disk_usage(str(storage_dir)).percent,
        load1=round(psutil.getloadavg()[0], 2),
        cpu_temp_c=cpu_temperature(),
        uptime_s=round(time.time() - psutil.boot_time(), 1),
    )


async def gpu_readings(nvidia_smi: str) -> list[GpuReading]:
    """Every NVIDIA GPU's load, memory, temperature and power; empty when nvidia-smi fails."""
    # Imported here: a printer's Pi has no nvidia-smi and never loads the render code.
    from agent.render.gpu import read_gpus

    return [
        GpuReading(index=g.index, util_pct=g.utilization_pct, mem_used_mb=g.memory_used_mb,
                   mem_total_mb=g.memory_total_mb, temp_c=g.temperature_c, power_w=g.power_w)
        for g in await read_gpus(nvidia_smi)
    ]


async def report_forever(storage_dir: Path, interval_s: float, publish: Callable[[HostMetrics], None]) -> None:
    """Publish a reading every ``interval_s``; a failed reading is logged and skipped."""
    psutil.cpu_percent(interval=None)
    # Looked up once: a machine without a GPU pays nothing per reading.
    nvidia_smi = shutil.which("nvidia-smi")
    while True:
        await asyncio.sleep(interval_s)
        try:
            # Sensor reads touch sysfs; keep them off the loop that streams G-code.
            metrics = await asyncio.to_thread(collect, storage_dir)
        except (OSError, psutil.Error) as exc:
            log.warning("metrics_failed", error=str(exc))
            continue
        if nvidia_smi is not None:
            metrics = metrics.model_copy(update={"gpus": await gpu_readings(nvidia_smi)})
        publish(metrics)
