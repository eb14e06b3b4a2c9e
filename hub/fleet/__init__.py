"""Nodes and devices: their state and telemetry, device profiles, device controls and the G-code console."""
