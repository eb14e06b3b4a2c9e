"""Three of Klipper's status objects as a simulated printer keeps them: a heater, ``print_stats``, ``virtual_sdcard``.

Their ``status()`` answers with the fields and values Klipper's own
``get_status()`` reports; ``klippy_printer`` drives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any


@dataclass
class Heater:
    temperature: float = 21.0
    target: float = 0.0

    def step(self, dt: float, tau_s: float) -> None:
        room = 21.0
        goal = self.target if self.target > 0 else room
        self.temperature += (goal - self.temperature) * min(1.0, dt / max(tau_s, 1e-6))

    def status(self) -> dict[str, Any]:
        power = 0.0 if self.target <= 0 else max(0.0, min(1.0, (self.target - self.temperature) / 10 + 0.3))
        return {"temperature": round(self.temperature, 2), "target": self.target, "power": round(power, 3)}


@dataclass
class PrintStats:
    """Klipper's ``print_stats``: durations count from the start, less the time paused."""

    filename: str = ""
    state: str = "standby"
    message: str = ""
    started: float | None = None
    paused_at: float | None = None
    paused_total: float = 0.0
    total: float = 0.0

    def status(self, now: float) -> dict[str, Any]:
        paused = self.paused_total
        if self.started is not None:
            if self.paused_at is not None:
                paused += now - self.paused_at
            self.total = now - self.started
        return {"filename": self.filename, "total_duration": round(self.total, 3),
                "print_duration": round(max(0.0, self.total - paused), 3), "filament_used": 0.0,
                "state": self.state, "message": self.message,
                "info": {"total_layer": None, "current_layer": None}}

    def start(self, now: float) -> None:
        if self.started is None:
            self.started = now
        elif self.paused_at is not None:
            self.paused_total += now - self.paused_at
            self.paused_at = None
        self.state, self.message = "printing", ""

    def pause(self, now: float) -> None:
        if self.paused_at is None:
            self.paused_at = now
        if self.state != "error":
            self.state = "paused"

    def finish(self, now: float, state: str, message: str = "") -> None:
        if self.started is None:
            return
        self.state, self.message = state, message
        self.total = now - self.started
        self.started = None


@dataclass
class SdCard:
    """Klipper's ``virtual_sdcard``: a file, a byte position in it, and whether it is being read."""

    file: IO[str] | None = None
    path: str | None = None
    position: int = 0
    size: int = 0
    active: bool = False

    def status(self) -> dict[str, Any]:
        progress = self.position / self.size if self.size else 0.0
        return {"file_path": self.path, "progress": round(progress, 4), "is_active": self.active,
                "file_position": self.position, "file_size": self.size}

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.file, self.path, self.active = None, None, False
        self.position = self.size = 0
