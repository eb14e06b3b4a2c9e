"""What the serial device tests share: an Emitter that keeps what the driver emits, and a bounded wait."""

from __future__ import annotations

import asyncio
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
