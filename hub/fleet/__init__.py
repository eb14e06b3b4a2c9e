"""Nodes and devices: their state and telemetry, device profiles, device controls and the G-code console."""

from .component import Fleet
from .schemas import Device, DeviceSpool, Node

__all__ = ["Device", "DeviceSpool", "Fleet", "Node"]
