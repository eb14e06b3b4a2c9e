"""What a simulated OctoPrint's printer does, apart from HTTP: its files, its job, its state and events.

The state texts, flags, events and error words are OctoPrint 1.11's with its bundled
virtual printer (tests/test_octoprint.py checks the driver against both). Time is
read from a clock when someone asks, never ticked by a task of its own, so many idle
simulated printers cost nothing: a job's progress is the time it has spent printing
over its printing time (``seconds_per_line`` × its G-code lines), frozen while paused.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .refused import Refused

AMBIENT_C = 21.3
HEAT_TAU_S = 0.5
FLAGS = ("operational", "printing", "cancelling", "pausing", "resuming", "finishing", "closedOrError", "error",
         "paused", "ready", "sdReady")
AWOL_AFTER_S = 4.0
"""A printer gone silent is given up on after this long (OctoPrint: consecutive communication timeouts)."""

Listener = Callable[[str, dict[str, Any] | None], None]
"""Called with an event's type and payload (OctoPrint's ``event`` socket message)."""


@dataclass(slots=True)
class SimFile:
    name: str
    size: int
    sha1: str
    lines: int
    date: int
    success: int = 0
    failure: int = 0
    last: dict[str, Any] | None = None

    def describe(self, base: str) -> dict[str, Any]:
        return {"name": self.name, "display": self.name, "path": self.name, "origin": "local", "type": "machinecode",
                "typePath": ["machinecode", "gcode"], "size": self.size, "hash": self.sha1, "date": self.date,
                "prints": {"success": self.success, "failure": self.failure, "last": self.last},
                "refs": {"resource": f"{base}/api/files/local/{self.name}",
                         "download": f"{base}/downloads/files/local/{self.name}"}}


@dataclass(slots=True)
class SimJob:
    file: SimFile
    print_s: float
    started: float
    elapsed_s: float = 0.0
    """Time printed before the current stretch (pauses excluded)."""
    resumed: float | None = None
    """When the current stretch of printing began; None while paused."""

    def printed_s(self, now: float) -> float:
        return self.elapsed_s + (now - self.resumed if self.resumed is not None else 0.0)


@dataclass(slots=True)
class SimOctoPrinter:
    """One OctoPrint and the printer behind it."""

    seconds_per_line: float = 0.003
    clock: Callable[[], float] = time.monotonic
    text: str = "Offline"
    error: str = ""
    files: dict[str, SimFile] = field(default_factory=dict)
    job: SimJob | None = None
    selected: SimFile | None = None
    targets: dict[str, float] = field(default_factory=lambda: {"tool0": 0.0, "bed": 0.0})
    heaters: dict[str, float] = field(default_factory=lambda: {"tool0": AMBIENT_C, "bed": AMBIENT_C})
    logs: list[str] = field(default_factory=list)
    log_start: int = 0
    """The sequence number of ``logs[0]``: sockets remember how far they have read."""
    listeners: list[Listener] = field(default_factory=list)
    awol_since: float | None = None
    _heated_at: float = 0.0

    # ---------------------------------------------------------------- what it reports

    def state(self) -> dict[str, Any]:
        self.advance()
        on = {"Operational": ("operational", "ready", "sdReady"), "Printing": ("operational", "printing", "sdReady"),
              "Paused": ("operational", "paused", "sdReady"), "Offline": ("closedOrError",),
              "Offline after error": ("closedOrError",)}[self.text]
        return {"text": self.text, "flags": {f: f in on for f in FLAGS}, "error": self.error}

    def snapshot(self, base: str) -> dict[str, Any]:
        """The body of a ``current`` message, less its logs."""
        state = self.state()
        now = self.clock()
        job, file = self.job, self.selected
        progress: dict[str, Any] = {"completion": None, "filepos": None, "printTime": None, "printTimeLeft": None,
                                    "printTimeLeftOrigin": None}
        if job is not None:
            done = min(1.0, job.printed_s(now) / job.print_s)
            progress = {"completion": 100.0 * done, "filepos": int(done * job.file.size),
                        "printTime": int(job.printed_s(now)), "printTimeLeft": int(job.print_s * (1 - done)),
                        "printTimeLeftOrigin": "estimate"}
        elif file is not None and file.last and file.last.get("success"):
            progress = {**progress, "completion": 100.0, "filepos": file.size, "printTimeLeft": 0}
        described = {"name": file.name, "path": file.name, "display": file.name, "origin": "local",
                     "size": file.size, "date": file.date} if file else \
            {"name": None, "path": None, "display": None, "origin": None, "size": None, "date": None}
        return {"state": state, "job": {"file": described, "estimatedPrintTime": job.print_s if job else None,
                                        "lastPrintTime": None, "filament": {}, "user": "farmhand" if file else None},
                "progress": progress, "currentZ": None, "offsets": {}, "serverTime": time.time(),
                "resends": {"count": 0, "transmitted": 0, "ratio": 0}, "busyFiles": [], "messages": [],
                "temps": [self.temperatures()] if self.text != "Offline" else []}

    def temperatures(self) -> dict[str, Any]:
        now = self.clock()
        factor = 1 - math.exp(-(now - self._heated_at) / HEAT_TAU_S) if self._heated_at else 1.0
        self._heated_at = now
        sample: dict[str, Any] = {"time": int(time.time())}
        for heater, target in self.targets.items():
            goal = target or AMBIENT_C
            self.heaters[heater] += (goal - self.heaters[heater]) * factor
            sample[heater] = {"actual": round(self.heaters[heater], 2), "target": target}
        return sample

    def log(self, *lines: str) -> None:
        self.logs.extend(lines)
        if len(self.logs) > 500:
            drop = len(self.logs) - 250
            del self.logs[:drop]
            self.log_start += drop

    def advance(self) -> None:
        """Catch up with the clock: a job that has printed its time is done; a silent printer, given up."""
        now = self.clock()
        if self.awol_since is not None and now - self.awol_since >= AWOL_AFTER_S:
            self.fail("Too many consecutive timeouts, printer still connected and alive?")
        job = self.job
        if job is not None and job.resumed is not None and job.printed_s(now) >= job.print_s:
            self.job = None
            job.file.success += 1
            job.file.last = {"date": time.time(), "printTime": job.print_s, "success": True}
            self.text = "Operational"
            self.targets = {"tool0": 0.0, "bed": 0.0}
            self._emit("PrintDone", {**self._about(job.file), "time": job.print_s})
            self._emit("PrinterStateChanged", {"state_id": "OPERATIONAL", "state_string": "Operational"})

    # ---------------------------------------------------------------- what it is told

    def connect(self) -> None:
        if self.text.startswith("Offline"):
            self.text, self.error, self.awol_since = "Operational", "", None
            self.log("Connected to: VIRTUAL, starting monitoring", "Recv: start")
            self._emit("Connected", {"port": "VIRTUAL", "baudrate": 115200})
            self._emit("FirmwareData", {"name": "Virtual Marlin 1.0", "data": {"FIRMWARE_NAME": "Virtual Marlin 1.0"}})

    def disconnect(self) -> None:
        if self.job is not None:
            self.fail("", event_error="The printer was disconnected")
        if not self.text.startswith("Offline"):
            self.text = "Offline"
        self._emit("Disconnected", None)

    def store(self, name: str, data: bytes) -> SimFile:
        if self.job is not None and self.job.file.name == name:
            raise Refused(409, f"Trying to overwrite file that is currently being printed: {name}")
        self.files[name] = SimFile(name, len(data), hashlib.sha1(data).hexdigest(), data.count(b"\n") or 1,
                                   int(time.time()))
        self._emit("Upload", {"name": name, "path": name, "target": "local"})
        return self.files[name]

    def start(self, name: str) -> None:
        file = self.files.get(name)
        if file is None:
            raise Refused(404, f"File not found on 'local': {name}")
        self.advance()
        if self.text != "Operational":
            busy = "Printer is already printing, cannot print"
            raise Refused(409, busy if self.job else "Printer is not operational")
        now = self.clock()
        self.selected = file
        self.job = SimJob(file, max(0.1, file.lines * self.seconds_per_line), now, resumed=now)
        self.text = "Printing"
        self.targets = {"tool0": 210.0, "bed": 60.0}
        self._emit("FileSelected", {**self._about(file), "user": "farmhand"})
        self._emit("PrintStarted", {**self._about(file), "user": "farmhand"})
        self._emit("PrinterStateChanged", {"state_id": "PRINTING", "state_string": "Printing"})

    def pause(self) -> None:
        job = self._job_for("pause")
        if job.resumed is not None:
            job.elapsed_s, job.resumed = job.printed_s(self.clock()), None
            self.text = "Paused"
            self._emit("PrintPaused", self._about(job.file))

    def resume(self) -> None:
        job = self._job_for("resume")
        if job.resumed is None:
            job.resumed = self.clock()
            self.text = "Printing"
            self._emit("PrintResumed", self._about(job.file))

    def cancel(self) -> None:
        job = self._job_for("cancel")
        self.job = None
        self.text = "Operational"
        self.targets = {"tool0": 0.0, "bed": 0.0}
        self._ended_badly(job.file, job)
        about = {**self._about(job.file), "time": job.printed_s(self.clock())}
        self._emit("PrintCancelling", self._about(job.file))
        self._emit("PrintCancelled", about)
        self._emit("PrintFailed", {**about, "reason": "cancelled"})

    def command(self, line: str) -> None:
        """One line sent to the printer: G-code, or a virtual printer ``!!DEBUG:`` fault."""
        self.advance()
        if self.text.startswith("Offline"):
            raise Refused(409, "Printer is not operational")
        self.log(f"Send: {line}")
        word = line.split()[0].upper() if line.split() else ""
        match line.removeprefix("!!DEBUG:") if line.startswith("!!DEBUG:") else word:
            case "M112":
                self.fail("Closing serial port due to emergency stop M112.")
            case "mintemp_error":
                self.log("Recv: Error:MINTEMP triggered!")
                self.fail("MINTEMP triggered! - ok")
            case "drop_connection":
                self.fail("SerialTimeoutException: ")
            case "go_awol":
                self.log("Recv: // Going AWOL")
                self.awol_since = self.clock()
            case "trigger_resend_lineno":
                self.log("Recv: Error:expected line 100 got 101", "Recv: Resend:100", "Recv: ok")
            case "M105":
                t, b = self.heaters["tool0"], self.heaters["bed"]
                self.log(f"Recv: ok T:{t:.2f}/ {self.targets['tool0']:.2f} B:{b:.2f}/ {self.targets['bed']:.2f} @:64")
            case "M115":
                self.log("Recv: FIRMWARE_NAME:Virtual Marlin 1.0 PROTOCOL_VERSION:1.0", "Recv: ok")
            case _:
                self.log("Recv: ok")

    def fail(self, error: str, *, event_error: str | None = None) -> None:
        """An error that closes the printer's connection, failing any print, as OctoPrint's are."""
        job, self.job = self.job, None
        self.awol_since = None
        if error:
            self.text, self.error = "Offline after error", error
            self._emit("Error", {"error": error, "reason": "firmware"})
        if job is not None:
            self._ended_badly(job.file, job)
            self._emit("PrintFailed", {**self._about(job.file), "time": job.printed_s(self.clock()),
                                       "reason": "error", "error": event_error or error})
        self.selected = None
        self.targets = {"tool0": 0.0, "bed": 0.0}
        self._emit("PrinterStateChanged", {"state_id": "OFFLINE", "state_string": "Offline"})

    # ---------------------------------------------------------------- helpers

    def _job_for(self, what: str) -> SimJob:
        self.advance()
        if self.job is None:
            raise Refused(409, f"Printer is neither printing nor paused, {what} command cannot be performed")
        return self.job

    def _ended_badly(self, file: SimFile, job: SimJob) -> None:
        file.failure += 1
        file.last = {"date": time.time(), "printTime": job.printed_s(self.clock()), "success": False}

    @staticmethod
    def _about(file: SimFile) -> dict[str, Any]:
        return {"name": file.name, "path": file.name, "origin": "local", "size": file.size, "owner": "farmhand"}

    def _emit(self, event: str, payload: dict[str, Any] | None) -> None:
        for listener in list(self.listeners):
            listener(event, payload)
