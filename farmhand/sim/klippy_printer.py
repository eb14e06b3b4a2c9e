"""What a simulated Klipper printer does: its G-code, its virtual SD card, its heaters, its status objects.

The API server (``klippy``) puts this on Klippy's unix socket. The objects and
their fields are Klipper's own (``print_stats``, ``virtual_sdcard``,
``display_status``, ``pause_resume``, ``webhooks``, ``extruder``,
``heater_bed``, ``idle_timeout``, ``heaters``, ``configfile``), with the
values Klipper reports, and the commands answer in Klipper's words: ``SD busy``,
``Unable to open file``, ``Print already paused``, ``Shutdown due to M112
command`` followed by the text Klipper appends to a shutdown.

A print reads the file from the gcodes folder, ``lines_per_s`` lines a second,
in steps driven by ``advance()``: no task or thread of its own, so a process
can hold hundreds. ``PAUSE``, ``RESUME`` and ``CANCEL_PRINT`` behave as the
usual Klipper configuration defines them (``[pause_resume]`` with Mainsail's
macros on top: a cancel also turns the heaters off).
"""

from __future__ import annotations

import os
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .klippy_objects import Heater, PrintStats, SdCard

READY = "Printer is ready"
STARTUP = "Printer is not ready\nThe klippy host software is attempting to connect.  Please\nretry in a few moments.\n"
SHUTDOWN_ADVICE = ("\nOnce the underlying issue is corrected, use the\n\"FIRMWARE_RESTART\" command to reset the firmware,"
                   " reload the\nconfig, and restart the host software.\nPrinter is shutdown\n")
VALID_GCODE_EXTS = ("gcode", "g", "gco")
_WORD = re.compile(r"([A-Z_]+|[A-Z*])")


class GcodeError(Exception):
    """A command Klipper refuses: the text is what ``!!`` shows and what the API's error says."""


@dataclass
class KlippyPrinter:
    """One simulated printer's state and G-code; the owner calls ``advance()`` a few times a second."""

    gcodes: Path
    lines_per_s: float = 200.0
    heat_tau_s: float = 0.5
    has_bed: bool = True
    on_output: Any = None
    """``on_output(line)``: where G-code responses go (the API server's output subscribers)."""
    state_message: str = READY
    shutdown: bool = False
    extruder: Heater = field(default_factory=Heater)
    bed: Heater = field(default_factory=Heater)
    stats: PrintStats = field(default_factory=PrintStats)
    sd: SdCard = field(default_factory=SdCard)
    paused: bool = False
    display_message: str | None = None
    m73_progress: float | None = None
    waiting_for: Heater | None = None
    started_files: list[str] = field(default_factory=list)
    """Every file a print was started from, in order: the proof that nothing started twice."""
    restart_requested: bool = False
    """RESTART or FIRMWARE_RESTART was asked for: the API server restarts the host (closing its clients)."""
    _last_step: float = field(default_factory=time.monotonic)
    _credit: float = 0.0

    # ------------------------------------------------------------ state

    @property
    def state(self) -> str:
        if self.state_message == READY:
            return "ready"
        if self.state_message == STARTUP:
            return "startup"
        return "shutdown" if self.shutdown else "error"

    def objects(self) -> list[str]:
        names = ["webhooks", "configfile", "heaters", "print_stats", "virtual_sdcard", "display_status",
                 "pause_resume", "idle_timeout", "extruder"]
        return names + (["heater_bed"] if self.has_bed else [])

    def status_of(self, name: str, now: float) -> dict[str, Any] | None:
        match name:
            case "webhooks":
                return {"state": self.state, "state_message": self.state_message}
            case "print_stats":
                return self.stats.status(now)
            case "virtual_sdcard":
                return self.sd.status()
            case "display_status":
                progress = self.m73_progress if self.m73_progress is not None else self.sd.status()["progress"]
                return {"progress": progress, "message": self.display_message}
            case "pause_resume":
                return {"is_paused": self.paused}
            case "idle_timeout":
                return {"state": "Printing" if self.sd.active else "Idle", "printing_time": 0.0}
            case "extruder":
                return {**self.extruder.status(), "can_extrude": self.extruder.temperature >= 170,
                        "pressure_advance": 0.0, "smooth_time": 0.04}
            case "heater_bed" if self.has_bed:
                return self.bed.status()
            case "heaters":
                heaters = ["extruder"] + (["heater_bed"] if self.has_bed else [])
                return {"available_heaters": heaters, "available_sensors": heaters, "available_monitors": []}
            case "configfile":
                config = {"virtual_sdcard": {"path": str(self.gcodes)}, "pause_resume": {}, "display_status": {},
                          "extruder": {"min_temp": "0", "max_temp": "280"}}
                if self.has_bed:
                    config["heater_bed"] = {"min_temp": "0", "max_temp": "120"}
                return {"config": config, "settings": config, "save_config_pending": False, "warnings": []}
        return None

    # ------------------------------------------------------------ G-code

    def run_script(self, script: str) -> None:
        """Run G-code as Klipper's ``gcode/script`` does: line by line, the first error ends the script."""
        for line in script.split("\n"):
            self.run_line(line)

    def run_line(self, line: str) -> None:
        text = line.split(";", 1)[0].strip()
        if not text:
            return
        parts = _WORD.split(text.upper())
        command = "".join(parts[:3]).strip()
        if self.shutdown or self.state != "ready":
            if command in ("FIRMWARE_RESTART", "RESTART", "M112"):
                return self._restart_or_stop(command)
            raise GcodeError(self.state_message.strip().split("\n", 1)[0]) from None
        params = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
        try:
            self._dispatch(command, text, params)
        except GcodeError as exc:
            self._respond(f"!! {exc}")
            raise

    def _dispatch(self, command: str, text: str, params: dict[str, str]) -> None:
        match command:
            case "M104" | "M109":
                self.extruder.target = float(params.get("S", 0) or 0)
                if command == "M109" and self.extruder.target > 0:
                    self.waiting_for = self.extruder
            case "M140" | "M190":
                if self.has_bed:
                    self.bed.target = float(params.get("S", 0) or 0)
                    if command == "M190" and self.bed.target > 0:
                        self.waiting_for = self.bed
            case "M73":
                if "P" in params:
                    self.m73_progress = min(1.0, max(0.0, float(params["P"]) / 100))
            case "M117":
                self.display_message = text[4:].strip() or None
            case "M105":  # as Klipper answers it off the serial port: sorted sensor ids, no "ok"
                bed = f"B:{self.bed.temperature:.1f} /{self.bed.target:.1f} " if self.has_bed else ""
                self._respond(f"{bed}T0:{self.extruder.temperature:.1f} /{self.extruder.target:.1f}")
            case "M112":
                self.invoke_shutdown("Shutdown due to M112 command")
            case "SDCARD_PRINT_FILE":
                self._print_file(_extended(text).get("FILENAME", ""))
            case "PAUSE":
                self._pause()
            case "RESUME":
                self._resume()
            case "CANCEL_PRINT":
                self.extruder.target = self.bed.target = 0.0  # the config's macro: TURN_OFF_HEATERS, then the base
                self._cancel()
            case "TURN_OFF_HEATERS":
                self.extruder.target = self.bed.target = 0.0
            case "FIRMWARE_RESTART" | "RESTART":
                self._restart_or_stop(command)
            case "G0" | "G1" | "G2" | "G3" | "G4" | "G21" | "G28" | "G90" | "G91" | "G92" | "M82" | "M83" | "M84" \
                    | "M106" | "M107" | "M220" | "M221" | "M400" | "SET_PRINT_STATS_INFO" | "M204" | "M201" | "M203":
                pass
            case _:
                self._respond(f'// Unknown command:"{command}"')

    def _print_file(self, filename: str) -> None:
        if self.sd.active:
            raise GcodeError("SD busy")
        filename = filename.lstrip("/")
        self._reset_file()
        path = _find_file(self.gcodes, filename)
        if path is None:
            raise GcodeError("Unable to open file")
        handle = path.open("r", encoding="utf-8", errors="replace", newline="")
        size = path.stat().st_size
        self._respond(f"File opened:{filename} Size:{size}")
        self._respond("File selected")
        self.sd.file, self.sd.path, self.sd.size = handle, str(path), size
        self.stats.filename = filename
        self.started_files.append(filename)
        self._sd_resume()

    def _reset_file(self) -> None:
        self.sd.close()
        self.stats = PrintStats()
        self.m73_progress = None

    def _sd_resume(self) -> None:
        self.sd.active = True
        self.stats.start(time.monotonic())
        self._last_step = time.monotonic()

    def _pause(self) -> None:
        if self.paused:
            self._respond("// Print already paused")
            return
        if self.sd.active:
            self.sd.active = False
            self.stats.pause(time.monotonic())
        else:
            self._respond("// action:paused")
        self.paused = True

    def _resume(self) -> None:
        if not self.paused:
            self._respond("// Print is not paused, resume aborted")
            return
        if self.sd.file is not None:
            self._sd_resume()
        else:
            self._respond("// action:resumed")
        self.paused = False

    def _cancel(self) -> None:
        if self.sd.file is not None:
            self.sd.close()
            self.stats.finish(time.monotonic(), "cancelled")
        else:
            self._respond("// action:cancel")
        self.paused = False
        self.waiting_for = None

    def invoke_shutdown(self, reason: str) -> None:
        """Klipper's shutdown: heaters off, the SD print stops where it is (print_stats says paused)."""
        if self.shutdown:
            return
        self.shutdown = True
        self.state_message = reason + SHUTDOWN_ADVICE
        self.extruder.target = self.bed.target = 0.0
        self.waiting_for = None
        if self.sd.active:
            self.sd.active = False
            self.stats.pause(time.monotonic())
        self._respond("// Klipper state: Shutdown")

    def _restart_or_stop(self, command: str) -> None:
        if command == "M112":
            self.invoke_shutdown("Shutdown due to M112 command")
            return
        self.restart_requested = True

    def restart(self) -> None:
        """The host software starts afresh (RESTART, FIRMWARE_RESTART): no print, no shutdown, state startup."""
        self._reset_file()
        self.shutdown = self.paused = False
        self.restart_requested = False
        self.extruder.target = self.bed.target = 0.0
        self.waiting_for = None
        self.display_message = None
        self.state_message = STARTUP

    def ready(self) -> None:
        self.state_message = READY
        self._respond("// Klipper state: Ready")

    # ------------------------------------------------------------ time

    def advance(self, now: float | None = None) -> None:
        """Heat the heaters and read the SD file for the time since the last call."""
        now = time.monotonic() if now is None else now
        dt, self._last_step = now - self._last_step, now
        self.extruder.step(dt, self.heat_tau_s)
        self.bed.step(dt, self.heat_tau_s)
        if not self.sd.active or self.sd.file is None:
            self._credit = 0.0
            return
        if self.waiting_for is not None:
            if abs(self.waiting_for.temperature - self.waiting_for.target) > 2.0:
                return
            self.waiting_for = None
        self._credit += dt * self.lines_per_s
        while self._credit >= 1.0 and self.sd.active and self.waiting_for is None:
            self._credit -= 1.0
            line = self.sd.file.readline()
            if not line:
                self.sd.close()
                self.stats.finish(now, "complete")
                self._respond("Done printing file")
                return
            self.sd.position += len(line.encode())
            try:
                self.run_line(line)
            except GcodeError as exc:
                self.sd.active = False
                self.extruder.target = self.bed.target = 0.0  # on_error_gcode: TURN_OFF_HEATERS
                self.stats.finish(now, "error", str(exc))
                return

    def _respond(self, text: str) -> None:
        if self.on_output is not None:
            self.on_output(text)

    def close(self) -> None:
        self.sd.close()


def _extended(text: str) -> dict[str, str]:
    """``NAME KEY=VALUE KEY="quoted value"`` parameters of an extended command."""
    try:
        words = shlex.split(text.split(None, 1)[1] if " " in text else "", comments=False, posix=True)
    except ValueError as exc:
        raise GcodeError(f"Malformed command '{text}'") from exc
    pairs = (w.split("=", 1) for w in words if "=" in w)
    return {k.upper(): v for k, v in pairs}


def _find_file(root: Path, name: str) -> Path | None:
    """The file Klipper would open: an exact relative path, else the same name in any case, gcode files only."""
    wanted = name.lower()
    for folder, _dirs, files in os.walk(root, followlinks=True):
        for file in files:
            full = Path(folder) / file
            relative = str(full.relative_to(root))
            if file.rsplit(".", 1)[-1].lower() in VALID_GCODE_EXTS and relative.lower() == wanted:
                return full
    return None
