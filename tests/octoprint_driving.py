"""Driving the OctoPrint driver in tests: a driver that retries fast, job files, waits on its events."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agent.devices.network import Backoff
from agent.devices.octoprint import OctoPrintPrinter
from protocol.messages import DeviceState
from tests.agent_support import wait_for
from tests.octoprint_peer import gcode_job
from tests.test_network_printer import Recorder


def driver(url: str, api_key: str, emitter: Recorder, device_id: str = "op1", **kw: Any) -> OctoPrintPrinter:
    return OctoPrintPrinter(device_id, emitter, url=url, api_key=api_key, poll_interval_s=0.5,
                            backoff=Backoff(first_s=0.2, max_s=1.0), **kw)


@contextlib.asynccontextmanager
async def running(printer: OctoPrintPrinter) -> AsyncIterator[OctoPrintPrinter]:
    await printer.open()
    try:
        yield printer
    finally:
        await printer.close()


def job(tmp_path: Path, lines: int) -> Path:
    path = tmp_path / f"job-{lines}.gcode"
    path.write_bytes(gcode_job(lines))
    return path


def job_id() -> str:
    return f"op-{uuid.uuid4().hex[:8]}"


async def printing(printer: OctoPrintPrinter, rec: Recorder, job_id: str) -> None:
    await wait_for(lambda: printer.status().state is DeviceState.PRINTING and "job_progress" in rec.types(),
                   20, f"job {job_id} printing")


def ended(rec: Recorder) -> list[Any]:
    return [e for e in rec.events if e.type in ("job_completed", "job_failed")]
