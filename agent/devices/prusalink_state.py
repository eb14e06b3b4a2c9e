"""What a PrusaLink printer's v1 status means to Farmhand: states, the job's phase, progress and time.

The v1 API (Prusa-Link-Web ``spec/openapi.yaml``) gives the printer's state as
one of IDLE, BUSY, PRINTING, PAUSED, FINISHED, STOPPED, ERROR, ATTENTION, READY
and the job's as one of PRINTING, PAUSED, FINISHED, STOPPED, ERROR. Progress is
documented as percent, but builds have reported a fraction (0–1); ``ProgressScale``
tells them apart per job from the job's own times, so 0.5 is 50 % on one printer
and 0.5 % on another and both come out right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from protocol.messages import DeviceState, Heater

from .network import JobPhase

ACTIVE_STATES = frozenset({"PRINTING", "PAUSED", "ATTENTION", "BUSY"})
"""Printer states in which a job that the status names is still going."""

_IDLE_STATES = frozenset({"IDLE", "READY", "FINISHED", "STOPPED"})
_JOB_PHASES = {"PRINTING": JobPhase.PRINTING, "PAUSED": JobPhase.PAUSED, "FINISHED": JobPhase.FINISHED,
               "STOPPED": JobPhase.CANCELLED, "ERROR": JobPhase.FAILED}


class ProgressScale:
    """Whether one job's progress numbers are percent or a fraction, decided once and kept for the job.

    A number above 1 can only be percent. Below that, the job's own clock says
    which: ``time_printing / (time_printing + time_remaining)`` is the fraction
    done, and the reading is taken in whichever scale lands nearer to it. With
    no times to go by, the spec's percent is assumed until the job shows
    otherwise.
    """

    def __init__(self) -> None:
        self._job: object = None
        self._scale: Literal["percent", "fraction"] | None = None

    def fraction(self, job: object, value: Any, printing_s: Any = None, remaining_s: Any = None) -> float | None:
        if job != self._job:
            self._job, self._scale = job, None
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            return None
        if value > 1.0:
            self._scale = "percent"
        elif self._scale is None:
            self._scale = _scale_by_clock(value, printing_s, remaining_s)
        scale = self._scale or "percent"
        return min(1.0, round(value / 100.0 if scale == "percent" else float(value), 6))


def _scale_by_clock(value: float, printing_s: Any, remaining_s: Any) -> Literal["percent", "fraction"] | None:
    if not all(isinstance(v, int | float) and v >= 0 for v in (printing_s, remaining_s)):
        return None
    total = printing_s + remaining_s
    if total <= 0 or printing_s < 1:
        return None
    done = printing_s / total
    if done < 0.02:
        return None  # 0.01 % and 0.01 look alike this early: wait for the job to show its scale
    return "fraction" if abs(value - done) < abs(value / 100.0 - done) else "percent"


def seconds(value: Any) -> float | None:
    """A time in seconds the printer gave, or None for missing or the -1 some builds send for unknown."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


def temperatures(printer: dict[str, Any]) -> dict[str, Heater]:
    """The serial driver's keys: T0 the nozzle, B the bed."""
    out: dict[str, Heater] = {}
    for key, actual, target in (("T0", "temp_nozzle", "target_nozzle"), ("B", "temp_bed", "target_bed")):
        value = printer.get(actual)
        if isinstance(value, int | float) and not isinstance(value, bool):
            goal = printer.get(target)
            out[key] = Heater(actual=float(value),
                              target=float(goal) if isinstance(goal, int | float) and goal > 0 else None)
    return out


def printer_problem(printer: dict[str, Any]) -> str | None:
    """The printer's own words for what is wrong (``status_printer.message`` when not ok)."""
    status = printer.get("status_printer")
    if isinstance(status, dict) and status.get("ok") is False:
        message = str(status.get("message") or "").strip()
        return message or None
    return None


@dataclass(frozen=True, slots=True)
class Reading:
    """One status, mapped."""

    state: DeviceState
    phase: JobPhase | None
    error: str | None


def read_state(printer_state: str, job_state: str | None, problem: str | None) -> Reading:
    """The printer's and its job's states (job_state None: no job) onto Farmhand's, with what to say."""
    has_job = job_state is not None
    phase = _JOB_PHASES.get(job_state) if job_state else None
    if printer_state == "ERROR":
        if phase in (JobPhase.PRINTING, JobPhase.PAUSED):
            phase = JobPhase.FAILED
        return Reading(DeviceState.ERROR, phase, problem or "the printer reports an error")
    if printer_state == "ATTENTION":
        words = problem or "the printer needs attention"
        if phase in (JobPhase.PRINTING, JobPhase.PAUSED):
            return Reading(DeviceState.PAUSED, JobPhase.PAUSED, words)
        return Reading(DeviceState.ERROR, phase, words)
    if printer_state == "PAUSED":
        return Reading(DeviceState.PAUSED, JobPhase.PAUSED if has_job else None, problem)
    if printer_state in ("PRINTING", "BUSY") and phase in (JobPhase.PRINTING, JobPhase.PAUSED):
        return Reading(DeviceState.PRINTING if phase is JobPhase.PRINTING else DeviceState.PAUSED, phase, problem)
    if printer_state == "PRINTING":
        return Reading(DeviceState.PRINTING, phase or (JobPhase.PRINTING if has_job else None), problem)
    if printer_state in _IDLE_STATES or printer_state == "BUSY":
        # A finished or stopped job stays named until the printer forgets it, so its end is seen.
        if phase in (JobPhase.PRINTING, JobPhase.PAUSED):
            phase = {"FINISHED": JobPhase.FINISHED, "STOPPED": JobPhase.CANCELLED}.get(printer_state)
        return Reading(DeviceState.IDLE, phase, problem if printer_state == "BUSY" else None)
    return Reading(DeviceState.ERROR, phase, f"unknown printer state {printer_state!r}")
