"""How a serial port is read: a name the agent's config accepts, kept apart from the serial code that acts on it,
so that reading the config loads none of it."""

from __future__ import annotations

from typing import Literal

Pacing = Literal["auto", "wire", "none"]
"""How a port is read. 'wire': a UART, answers come at the baud rate's pace and may be read in batches;
'none': a pty or USB link with no wire (Klipper's /tmp/printer), answers read as they arrive; 'auto': ask the
port's driver (``SerialLink.has_uart``)."""
