"""The agent of ``bench.network_printers`` as a process of its own (``farmhand agent``), with its CPU and RSS."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from tests.authkit import AGENT_TOKEN
from tests.process_farm import write_toml

POLL_INTERVAL_S = 1.0
"""The agent's poll (and telemetry) interval: every printer reports once a second."""


class AgentProcess:
    """``farmhand agent`` with ``devices``; its log goes to ``agent.log`` in ``workdir``."""

    def __init__(self, workdir: Path, node_id: str, mqtt_url: str, devices: list[dict[str, Any]],
                 python: str = sys.executable) -> None:
        """``python``: the interpreter to run it with (an agent-only install measures an agent's own memory)."""
        self.python = python
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.config = write_toml(
            workdir / "agent.toml", {"node_id": node_id, "telemetry_interval_s": POLL_INTERVAL_S,
                                     "metrics_interval_s": 10.0},
            {"mqtt": {"url": mqtt_url}, "hub": {"token": AGENT_TOKEN}, "storage": {"dir": str(workdir / "state")}},
            {"devices": devices})
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None
        self._rss_peak = 0

    def start(self) -> None:
        with open(self.workdir / "agent.log", "ab") as log:
            self.proc = subprocess.Popen(
                [self.python, "-m", "farmhand.cli", "--log-level", "warning", "agent", "--config",
                 str(self.config)], stdout=log, stderr=log, env={**os.environ, "FARMHAND_LOG_JSON": "1"})
        self.ps = psutil.Process(self.proc.pid)

    async def usage(self, window_s: float) -> dict[str, float]:
        """The agent's CPU (% of one core) over ``window_s``, and its peak RSS then (MB), sampled each second."""
        assert self.ps is not None
        before, started = self._cpu(), time.monotonic()
        while time.monotonic() - started < window_s:
            await asyncio.sleep(1.0)
            self.rss_mb()
        elapsed = time.monotonic() - started
        return {"cpu_pct": 100 * (self._cpu() - before) / elapsed, "rss_mb": self.rss_mb()}

    def _cpu(self) -> float:
        assert self.ps is not None
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss_mb(self) -> float:
        """The highest resident set size seen so far, in MB (10⁶ bytes)."""
        if self.ps is not None and self.proc is not None and self.proc.poll() is None:
            self._rss_peak = max(self._rss_peak, self.ps.memory_info().rss)
        return round(self._rss_peak / 1e6, 1)

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait, 10)
        if self.proc.returncode not in (0, -15):
            log = (self.workdir / "agent.log").read_text()[-3000:]
            print(f"the agent exited {self.proc.returncode}:\n{log}", file=sys.stderr, flush=True)
        self.proc = None
