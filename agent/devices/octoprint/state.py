"""OctoPrint's push messages read as our printer state.

OctoPrint's socket sends ``history`` once and then ``current`` messages: each carries
the whole state (text, flags, error), the selected job and its progress, but only
the temperature samples and log lines since the previous message. ``PrinterView``
keeps the last of each so that every report handed to the base is a full snapshot.

OctoPrint deselects the file when a print fails with an error and says nothing of a
job's outcome in its state ("Operational" follows a finished print and a cancelled one
alike), so the outcome comes from the ``PrintDone``/``PrintCancelled``/``PrintFailed``
events and is kept in the reports until the next print starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from protocol.messages import DeviceState, Heater

from ..network import JobPhase, PrinterReport

_HEATER_KEYS = {"bed": "B", "chamber": "C"}
_TOOL = re.compile(r"tool(\d+)$")
_FIRMWARE_ERROR = re.compile(r"^Recv:\s*(?:Error:|!!)\s*(.+)$")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How OctoPrint says a print ended."""

    file: str
    phase: JobPhase
    reason: str | None = None


def device_state(state: dict[str, Any]) -> DeviceState:
    """OctoPrint's state text and flags as our ``DeviceState``."""
    flags = state.get("flags") or {}
    text = str(state.get("text") or "")
    if flags.get("error") or text.startswith("Error") or (flags.get("closedOrError") and state.get("error")):
        return DeviceState.ERROR
    if flags.get("closedOrError") or not flags.get("operational"):
        return DeviceState.DISCONNECTED
    if flags.get("paused") or flags.get("pausing"):
        return DeviceState.PAUSED
    if any(flags.get(f) for f in ("printing", "cancelling", "finishing", "resuming")) or text == "Starting":
        return DeviceState.PRINTING
    return DeviceState.IDLE


def printer_unconnected(state: dict[str, Any]) -> bool:
    """OctoPrint runs but holds no connection to its printer, and not because of an error."""
    return device_state(state) is DeviceState.DISCONNECTED and not state.get("error") \
        and str(state.get("text") or "") in ("Offline", "Closed", "")


def temperatures(sample: dict[str, Any]) -> dict[str, Heater]:
    """One entry of OctoPrint's ``temps`` list with our serial driver's keys (T0, T1, B, C)."""
    found: dict[str, Heater] = {}
    for name, reading in sample.items():
        if not isinstance(reading, dict) or reading.get("actual") is None:
            continue
        tool = _TOOL.match(name)
        key = f"T{tool.group(1)}" if tool else _HEATER_KEYS.get(name)
        if key is not None:
            found[key] = Heater(actual=float(reading["actual"]),
                                target=None if reading.get("target") is None else float(reading["target"]))
    return found


def firmware_error(log_line: str) -> str | None:
    """The firmware's words in an error line OctoPrint logged (``Recv: Error:MINTEMP triggered!``)."""
    match = _FIRMWARE_ERROR.match(log_line)
    return match.group(1).strip() if match else None


def outcome_of(event: str, payload: dict[str, Any], previous: Outcome | None) -> Outcome | None:
    """The job outcome an OctoPrint event announces; ``previous`` when the event says nothing new."""
    name = str(payload.get("path") or payload.get("name") or "")
    match event:
        case "PrintStarted":
            return None
        case "PrintDone":
            return Outcome(name, JobPhase.FINISHED)
        case "PrintCancelled":
            return Outcome(name, JobPhase.CANCELLED, "cancelled")
        case "PrintFailed":
            if payload.get("reason") == "cancelled" or (previous and previous.file == name
                                                        and previous.phase is JobPhase.CANCELLED):
                # OctoPrint follows PrintCancelled with PrintFailed(reason=cancelled): one cancel.
                return Outcome(name, JobPhase.CANCELLED, "cancelled")
            return Outcome(name, JobPhase.FAILED, str(payload.get("error") or "OctoPrint reports the print failed"))
    return previous


class PrinterView:
    """The latest full picture of one OctoPrint, assembled from its ``history``/``current`` messages."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.job_file: str | None = None
        self.completion: float | None = None
        self.time_left: float | None = None
        self.temperatures: dict[str, Heater] = {}
        self.outcome: Outcome | None = None
        self.last_firmware_error: str | None = None
        self.firmware: str | None = None

    def update(self, data: dict[str, Any]) -> list[str]:
        """Merge one ``history`` or ``current`` body; returns its log lines."""
        if isinstance(data.get("state"), dict):
            self.state = data["state"]
        job = data.get("job") or {}
        file = job.get("file") or {}
        self.job_file = file.get("path") or file.get("name") or None
        progress = data.get("progress") or {}
        completion = progress.get("completion")
        self.completion = None if completion is None else float(completion) / 100.0
        left = progress.get("printTimeLeft")
        self.time_left = None if left is None else float(left)
        samples = [s for s in data.get("temps") or [] if isinstance(s, dict)]
        if samples:
            self.temperatures = temperatures(samples[-1]) or self.temperatures
        logs = [line for line in data.get("logs") or [] if isinstance(line, str)]
        for line in logs:
            error = firmware_error(line)
            if error:
                self.last_firmware_error = error
        return logs

    def report(self) -> PrinterReport:
        state = device_state(self.state)
        error = str(self.state.get("error") or "") or None
        if state is DeviceState.ERROR and error is None:
            error = self.last_firmware_error or str(self.state.get("text") or "error")
        phase: JobPhase | None = None
        job_file = self.job_file
        if state is DeviceState.PRINTING:
            phase = JobPhase.PRINTING
        elif state is DeviceState.PAUSED:
            phase = JobPhase.PAUSED
        elif self.outcome is not None and (job_file is None or job_file == self.outcome.file):
            job_file, phase = self.outcome.file, self.outcome.phase
            error = self.outcome.reason if self.outcome.phase is not JobPhase.FINISHED else error
        live = phase in (JobPhase.PRINTING, JobPhase.PAUSED)
        return PrinterReport(
            state=state, temperatures=dict(self.temperatures), job_file=job_file, job_phase=phase,
            progress=self.completion if live else None, remaining_s=self.time_left if live else None,
            error=error, firmware=self.firmware,
        )
