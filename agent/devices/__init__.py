"""Driver registry: a driver kind (``serial_gcode``) names a factory that builds its Device.

Factories import their driver module when called, so a node that only drives
serial printers never loads the code (or the dependencies) of other drivers.
A new driver is one module plus one line in ``_FACTORIES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from .base import Device, Emitter

if TYPE_CHECKING:
    from agent.config import DeviceConfig

DeviceFactory = Callable[["DeviceConfig", Emitter, float], Device]
"""``factory(config, emitter, poll_interval_s) -> Device``."""


class UnknownDriver(ValueError):
    """The config names a driver kind this agent does not have."""


def _serial_gcode(config: DeviceConfig, emitter: Emitter, poll_interval_s: float) -> Device:
    from .serial_gcode import SerialGcodeDevice

    assert config.port is not None, "DeviceConfig requires a port for serial_gcode"
    return SerialGcodeDevice(
        config.id,
        emitter,
        port=config.port,
        baud=config.baud,
        profile=config.profile,
        model=config.model,
        poll_interval_s=poll_interval_s,
        pacing=config.pacing,
    )


def _blender(config: DeviceConfig, emitter: Emitter, poll_interval_s: float) -> Device:
    from .blender import BlenderDevice

    return BlenderDevice(config.id, emitter, blender=config.blender, max_task_s=config.max_task_s,
                         poll_interval_s=poll_interval_s)


def _network(kind: str) -> DeviceFactory:
    """A networked printer's driver: module ``agent.devices.<kind>`` with ``create(config, emitter, poll_interval_s)``."""

    def factory(config: DeviceConfig, emitter: Emitter, poll_interval_s: float) -> Device:
        module = importlib.import_module(f"{__name__}.{kind}")
        device: Device = module.create(config, emitter, poll_interval_s)
        return device

    return factory


_FACTORIES: dict[str, DeviceFactory] = {
    "serial_gcode": _serial_gcode,
    "blender": _blender,
    **{kind: _network(kind) for kind in ("octoprint", "moonraker", "prusalink", "bambu")},
}


def known_kinds() -> list[str]:
    return sorted(_FACTORIES)


def check_kind(kind: str) -> None:
    if kind not in _FACTORIES:
        raise UnknownDriver(f"unknown driver {kind!r}; known drivers: {', '.join(known_kinds())}")


def register(kind: str, factory: DeviceFactory) -> None:
    """Add a driver kind (a plug-in, or a test's own device)."""
    _FACTORIES[kind] = factory


def unregister(kind: str) -> None:
    _FACTORIES.pop(kind, None)


def create(config: DeviceConfig, emitter: Emitter, *, poll_interval_s: float) -> Device:
    check_kind(config.driver)
    return _FACTORIES[config.driver](config, emitter, poll_interval_s)
