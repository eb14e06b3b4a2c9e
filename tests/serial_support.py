"""What the serial tests share: an Emitter that keeps what the driver emits, a bounded wait, a conversation."""

from __future__ import annotations

import asyncio
import os
import time
import tty
from collections.abc import Callable
from typing import Any

from agent.devices.serial_gcode import SerialGcodeDevice
from protocol.messages import DeviceInfo, DeviceStatus, Event, JobCompleted, JobFailed, Telemetry


class Recorder:
    """The smallest Emitter: keeps what the driver emits, in order (and the device's info at each status)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.statuses: list[DeviceStatus] = []
        self.infos: list[DeviceInfo] = []
        self.readings: list[Telemetry] = []
        self.device: SerialGcodeDevice | None = None

    def event(self, body: Event) -> None:
        self.events.append(body)

    def status(self, status: DeviceStatus) -> None:
        self.statuses.append(status)
        if self.device is not None:
            self.infos.append(self.device.info())

    def telemetry(self, telemetry: Telemetry) -> None:
        self.readings.append(telemetry)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def ended(self) -> bool:
        return bool(self.of(JobCompleted) or self.of(JobFailed))


async def until(condition: Callable[[], object], timeout: float = 30.0) -> None:
    """Wait for a condition; the timeout only stops a broken test from hanging."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def converse(port: str | os.PathLike[str], lines: list[str], *, quiet_s: float = 0.2,
                   timeout_s: float = 10.0) -> list[tuple[str, list[str]]]:
    """Say each line to the firmware on ``port`` and collect what it answers.

    An answer is complete once an ``ok`` came and then ``quiet_s`` of silence, or,
    after a restart command, once the firmware says it is ready again.
    """
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    pending = b""
    said: list[tuple[str, list[str]]] = []
    try:
        for line in lines:
            os.write(fd, line.encode() + b"\n")
            replies: list[str] = []
            restart = line.split(" ", 1)[0] in ("FIRMWARE_RESTART", "RESTART")
            deadline = time.monotonic() + timeout_s
            last = time.monotonic()
            while time.monotonic() < deadline:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    data = b""
                if data:
                    last = time.monotonic()
                    *complete, pending = (pending + data).split(b"\n")
                    replies += [c.decode(errors="replace").strip() for c in complete]
                answered = any(r == "ok" or r.startswith("ok ") for r in replies)
                done = answered and time.monotonic() - last >= quiet_s
                if done and (not restart or any(r.endswith("Ready") for r in replies)):
                    break
                await asyncio.sleep(0.005)
            said.append((line, replies))
    finally:
        os.close(fd)
    return said
