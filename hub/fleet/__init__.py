"""Nodes and devices: their state and telemetry, device profiles, device controls and the G-code console."""

from .component import Fleet
from .schemas import Device, LoadedMaterial, Node

__all__ = ["Device", "Fleet", "LoadedMaterial", "Node"]
