"""The one interface every driver implements (serial G-code, OctoPrint, Moonraker, Blender…).

The agent's node code never asks what kind of device it holds: it calls these
methods and forwards what the driver emits. A driver raises ``CommandRejected``
with a reason a person can act on when it cannot do what was asked.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from protocol.messages import DeviceInfo, DeviceStatus, Event, Telemetry

if TYPE_CHECKING:
    from protocol.messages import StartRender


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


# ----------------------------------------------------------------- capabilities
# What a driver can do beyond the Device interface, declared by implementing one
# of these. The agent routes commands by them and announces them to the hub
# (``declared_capabilities``), so the hub never asks which driver a device has.


@runtime_checkable
class Console(Protocol):
    """A device with a G-code console: SendGcode goes only to these.

    It emits the firmware's replies as ConsoleOutput events and returns when the
    lines are done; CommandRejected when it cannot take them now (printing, say).
    """

    async def send_gcode(self, command_id: str, lines: list[str]) -> None: ...


@runtime_checkable
class Renderer(Protocol):
    """A device that renders (the Blender driver): StartRender goes only to these."""

    async def start_render(self, command: StartRender, blend: Path) -> None: ...


@runtime_checkable
class FileUpload(Protocol):
    """A printer that keeps job files in storage of its own (a networked printer): a job is
    uploaded there, checked and then started, instead of being streamed line by line."""

    async def upload(self, path: Path, name: str) -> str:
        """Store ``path`` on the printer as ``name``; returns the name it is stored under."""
        ...


@runtime_checkable
class Camera(Protocol):
    """A device with a camera: a still image on request."""

    async def snapshot(self) -> bytes:
        """One JPEG frame; CommandRejected when the camera is unavailable."""
        ...


_CAPABILITIES: tuple[tuple[str, type], ...] = (
    ("console", Console), ("render", Renderer), ("file_upload", FileUpload), ("camera", Camera),
)


def declared_capabilities(device: Device) -> list[str]:
    """The capability words a device's driver declares by what it implements."""
    return list(_declared_by(type(device)))


@functools.cache
def _declared_by(driver: type) -> tuple[str, ...]:
    # By the driver's class, once: a protocol isinstance check costs ~0.1 ms on Python 3.11, and the node
    # asks for every device's capabilities whenever one device's status changes.
    return tuple(name for name, kind in _CAPABILITIES if issubclass(driver, kind))
