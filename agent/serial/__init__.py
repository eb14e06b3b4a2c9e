"""Talking G-code over a serial line: line preparation, firmware replies, the host protocol engine.

Nothing here touches asyncio or the port; ``agent.devices.serial_gcode`` does the plumbing.
"""
