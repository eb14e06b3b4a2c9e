"""What Klipper's status objects say, turned into the agent's ``PrinterReport``.

A full read (``printer.objects.query`` of everything in ``Interest.all()``)
makes the snapshot; after it come the subscribed fields that changed
(``notify_status_update``) and the polled readings. ``KlipperStatus`` keeps
the merged snapshot, so every report is a full one whatever the last delta
held.

The mapping:

- ``webhooks.state`` is Klippy's own: ``ready``; ``startup`` (shown as
  disconnected: the host is still starting); ``shutdown`` and ``error`` are
  the error state, in Klipper's words (``webhooks.state_message``). A print
  that was running when Klippy shut down has failed with those words.
  Klippy not connected to Moonraker at all is ``disconnected``.
- ``print_stats.state``: ``printing``, ``paused``; ``complete``,
  ``cancelled``, ``error`` (with ``print_stats.message``) end the job and
  leave the printer idle; ``standby`` is idle with no job.
- Progress is ``display_status.progress`` (the slicer's M73 while it is
  fresh, else the file position), or ``virtual_sdcard.progress`` where the
  config has no ``display_status``.
- Time left: ``print_duration × (1 − p) / p`` once progress p reaches 2 %
  (Mainsail's "file" estimate: the rate so far, pauses excluded, carried over
  the rest of the file); before that, the slicer's ``estimated_time`` from
  Moonraker's metadata less ``print_duration``, when the file has one.
- Temperatures: ``extruder``, ``extruder1``… as ``T0``, ``T1``…,
  ``heater_bed`` as ``B``, a ``chamber`` heater or sensor as ``C``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from protocol.messages import DeviceState, Heater

from .network import JobPhase, PrinterReport

MIN_PROGRESS_FOR_ESTIMATE = 0.02
# What changes seldom and must be known at once (a job's start, end, pause; a shutdown) is subscribed to;
# what changes with every report Klippy makes (4 a second: temperatures, progress, durations) is read
# once per poll interval. Subscribed to, those alone made every printing printer 4 messages a second.
_SUBSCRIBED: dict[str, list[str]] = {
    "webhooks": ["state", "state_message"],
    "print_stats": ["filename", "state", "message"],
    "virtual_sdcard": ["file_path", "is_active"],
}
_POLLED: dict[str, list[str]] = {
    "print_stats": ["print_duration"],
    "virtual_sdcard": ["progress"],
    "display_status": ["progress"],
}
_EXTRUDER = re.compile(r"extruder(\d*)$")
_CHAMBERS = ("heater_generic chamber", "temperature_sensor chamber", "temperature_fan chamber")
_PHASES = {"printing": JobPhase.PRINTING, "paused": JobPhase.PAUSED, "complete": JobPhase.FINISHED,
           "cancelled": JobPhase.CANCELLED, "error": JobPhase.FAILED}


def heater_key(name: str) -> str | None:
    """The agent's name for a Klipper heater object (``T0``, ``B``, ``C``), or None for one we do not show."""
    match = _EXTRUDER.match(name)
    if match:
        return f"T{match.group(1) or 0}"
    if name == "heater_bed":
        return "B"
    return "C" if name in _CHAMBERS else None


@dataclass(frozen=True)
class Interest:
    """The objects and fields to subscribe to and to poll, of those this printer's config has."""

    subscribed: dict[str, list[str]]
    polled: dict[str, list[str]]

    @classmethod
    def of(cls, available: list[str]) -> Interest:
        subscribed = {name: fields for name, fields in _SUBSCRIBED.items() if name in available}
        subscribed["webhooks"] = _SUBSCRIBED["webhooks"]  # Klippy always has it, even before objects/list answers
        polled = {name: fields for name, fields in _POLLED.items() if name in available}
        for name in available:
            if heater_key(name) is not None:
                subscribed[name] = ["target"]
                polled[name] = ["temperature"]
        return cls(subscribed, polled)

    def all(self) -> dict[str, list[str]]:
        """Both, for a full read (on connecting, after a start)."""
        merged = {name: list(fields) for name, fields in self.subscribed.items()}
        for name, fields in self.polled.items():
            merged[name] = merged.get(name, []) + fields
        return merged

    def job(self) -> dict[str, list[str]]:
        """What says how a job stands: print_stats, virtual_sdcard and display_status, all their fields."""
        every = self.all()
        return {name: every[name] for name in ("print_stats", "virtual_sdcard", "display_status") if name in every}


@dataclass
class KlipperStatus:
    """The merged snapshot of one printer's Klipper objects, and what Moonraker said of Klippy."""

    klippy_state: str = "disconnected"
    """Moonraker's ``klippy_state``: disconnected, startup, ready, shutdown or error."""
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    firmware: str | None = None
    estimated_time: dict[str, float] = field(default_factory=dict)
    """The slicer's total time per file name, from Moonraker's metadata."""

    def replace(self, status: dict[str, Any]) -> None:
        """A full answer (subscribe or query): it replaces what we held of those objects."""
        for name, values in status.items():
            if isinstance(values, dict):
                self.objects[name] = dict(values)
        self._follow_webhooks()

    def merge(self, delta: dict[str, Any]) -> None:
        """A ``notify_status_update``: only the fields that changed."""
        for name, values in delta.items():
            if isinstance(values, dict):
                self.objects.setdefault(name, {}).update(values)
        self._follow_webhooks()

    def klippy_gone(self) -> None:
        """Klippy left Moonraker: what we held describes a host that is no longer there."""
        self.klippy_state = "disconnected"
        self.objects.clear()

    def _follow_webhooks(self) -> None:
        state = self.objects.get("webhooks", {}).get("state")
        if isinstance(state, str):
            self.klippy_state = state

    @property
    def job_file(self) -> str | None:
        name = self.objects.get("print_stats", {}).get("filename")
        return name if isinstance(name, str) and name else None

    def report(self) -> PrinterReport:
        webhooks = self.objects.get("webhooks", {})
        stats = self.objects.get("print_stats", {})
        temperatures = self._temperatures()
        if self.klippy_state in ("disconnected", "startup"):
            return PrinterReport(DeviceState.DISCONNECTED, temperatures, firmware=self.firmware)
        phase = _PHASES.get(str(stats.get("state", "")))
        job_file = self.job_file if phase is not None else None
        error: str | None = None
        if self.klippy_state in ("shutdown", "error"):
            state = DeviceState.ERROR
            error = str(webhooks.get("state_message") or f"Klippy {self.klippy_state}").strip()
            if phase in (JobPhase.PRINTING, JobPhase.PAUSED):
                phase = JobPhase.FAILED  # a print does not survive a shutdown, whatever print_stats still says
        elif phase is JobPhase.PRINTING:
            state = DeviceState.PRINTING
        elif phase is JobPhase.PAUSED:
            state = DeviceState.PAUSED
        else:
            state = DeviceState.IDLE
            if phase is JobPhase.FAILED:
                error = str(stats.get("message") or "") or None
        progress = self._progress(phase)
        return PrinterReport(state, temperatures, job_file=job_file, job_phase=phase, progress=progress,
                             remaining_s=self._remaining(phase, progress, stats, job_file), error=error,
                             firmware=self.firmware)

    def _progress(self, phase: JobPhase | None) -> float | None:
        if phase is None:
            return None
        if phase is JobPhase.FINISHED:
            return 1.0
        for name in ("display_status", "virtual_sdcard"):
            value = self.objects.get(name, {}).get("progress")
            if isinstance(value, int | float):
                return min(1.0, max(0.0, float(value)))
        return None

    def _remaining(self, phase: JobPhase | None, progress: float | None, stats: dict[str, Any],
                   job_file: str | None) -> float | None:
        if phase not in (JobPhase.PRINTING, JobPhase.PAUSED):
            return None
        duration = stats.get("print_duration")
        if not isinstance(duration, int | float):
            return None
        if progress is not None and progress >= MIN_PROGRESS_FOR_ESTIMATE and duration > 0:
            return round(duration * (1 - progress) / progress, 1)
        slicer = self.estimated_time.get(job_file or "")
        return round(max(0.0, slicer - duration), 1) if slicer is not None else None

    def _temperatures(self) -> dict[str, Heater]:
        found: dict[str, Heater] = {}
        for name, values in self.objects.items():
            key = heater_key(name)
            actual = values.get("temperature")
            if key is None or not isinstance(actual, int | float):
                continue
            target = values.get("target")
            found[key] = Heater(actual=round(float(actual), 2),
                                target=float(target) if isinstance(target, int | float) else None)
        return found
