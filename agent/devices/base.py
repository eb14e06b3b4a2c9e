"""The one interface every driver implements (serial G-code, OctoPrint, Moonraker, Blender…).

The agent's node code never asks what kind of device it holds: it calls these
methods and forwards what the driver emits. A driver raises ``CommandRejected``
with a reason a person can act on when it cannot do what was asked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Protocol

from protocol.messages import DeviceInfo, DeviceStatus, Event, Telemetry


class CommandRejected(Exception):
    """The device cannot do this now (busy, disconnected, no job); the text says why."""


class Emitter(Protocol):
    """Where a driver sends what happens. Calls are synchronous and cheap."""

    def event(self, body: Event) -> None:
        """A QoS 1 event: persisted in the spool before this returns, sent in order."""

    def status(self, status: DeviceStatus) -> None:
        """The device's new retained snapshot (call on every state change)."""

    def telemetry(self, telemetry: Telemetry) -> None:
        """Lossy readings; dropped when offline."""


class Device(ABC):
    """A machine the agent drives."""

    def __init__(self, device_id: str, emitter: Emitter) -> None:
        self.id = device_id
        self.emitter = emitter

    @abstractmethod
    def info(self) -> DeviceInfo: ...

    @abstractmethod
    def status(self) -> DeviceStatus: ...

    @abstractmethod
    async def open(self) -> None:
        """Start background work (connecting, polling). Must not block on an absent device."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def start_job(self, job_id: str, path: Path) -> None:
        """Begin a job from a local file; returns once it has started. Raises CommandRejected."""

    @abstractmethod
    async def pause(self) -> None: ...

    @abstractmethod
    async def resume(self) -> None: ...

    @abstractmethod
    async def cancel(self) -> None: ...

    @abstractmethod
    async def emergency_stop(self) -> None: ...
