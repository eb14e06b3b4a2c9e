"""What a Bambu printer's ``push_status`` reports mean, as one ``PrinterReport``.

X1 printers send the whole ``print`` object every time; P1 and A1 send only the
fields that changed since their last report, and the whole object once when
asked (``pushing.pushall``). ``PrintSnapshot`` merges every delta onto the
snapshot, so what the base sees is always whole, whichever model talks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from protocol.messages import DeviceState, Heater, LoadedMaterial

from .bambu_codes import CANCELLED_CODES, HMS_FATAL, HMS_SERIOUS, describe_print_error, hms_entries
from .network import JobPhase, PrinterReport, job_id_in

# gcode_state → what the device is doing and where the job stands. FINISH and
# FAILED stay reported (with the file's name) until the next print, which is
# how the base ends a job; the printer is ready for another job in both.
_STATES: dict[str, tuple[DeviceState, JobPhase | None]] = {
    "IDLE": (DeviceState.IDLE, None),
    "SLICING": (DeviceState.PRINTING, JobPhase.PRINTING),
    "PREPARE": (DeviceState.PRINTING, JobPhase.PRINTING),
    "RUNNING": (DeviceState.PRINTING, JobPhase.PRINTING),
    "PAUSE": (DeviceState.PAUSED, JobPhase.PAUSED),
    "FINISH": (DeviceState.IDLE, JobPhase.FINISHED),
    "FAILED": (DeviceState.IDLE, JobPhase.FAILED),
}


# Fields every whole report carries and a delta carries only when they changed, all at once rarely.
_WHOLE = frozenset({"gcode_state", "gcode_file", "mc_percent", "nozzle_temper", "bed_temper"})


def merge(into: dict[str, Any], delta: Mapping[str, Any]) -> None:
    """Lay a delta report over the snapshot: objects merge key by key, anything else (lists too) replaces."""
    for key, value in delta.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = _copy(value)


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


class PrintSnapshot:
    """The printer's whole ``print`` object, rebuilt from its full and delta reports on one connection."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.firmware: str | None = None
        self.complete = False
        """A whole report has arrived: before it, deltas alone would describe half a printer."""

    def absorb(self, push_status: Mapping[str, Any]) -> None:
        merge(self.fields, push_status)
        if _WHOLE <= push_status.keys():
            self.complete = True

    def report(self) -> PrinterReport:
        f = self.fields
        gcode_state = str(f.get("gcode_state", "")).upper()
        state, phase = _STATES.get(gcode_state, (DeviceState.IDLE, None))
        print_error = _int(f.get("print_error")) or 0
        if phase is JobPhase.FAILED and print_error in CANCELLED_CODES:
            phase = JobPhase.CANCELLED
        hms = hms_entries(f.get("hms"))
        error = describe_print_error(print_error) if print_error else None
        if error is None and hms:
            error = "; ".join(words for _, words in hms)
        if phase is None and any(severity in (HMS_FATAL, HMS_SERIOUS) for severity, _ in hms):
            state = DeviceState.ERROR
        percent = _float(f.get("mc_percent"))
        minutes = _float(f.get("mc_remaining_time"))
        return PrinterReport(
            state=state,
            temperatures=_temperatures(f),
            job_file=_job_file(f),
            job_phase=phase,
            progress=1.0 if phase is JobPhase.FINISHED else (percent / 100 if percent is not None else None),
            remaining_s=max(0.0, minutes * 60) if minutes is not None and phase is not None else None,
            error=error,
            materials=_materials(f),
            firmware=self.firmware,
        )

    def read_version(self, info: Mapping[str, Any]) -> bool:
        """``info.get_version``: the firmware version is the ``ota`` module's. True when it changed."""
        modules = info.get("module")
        before = self.firmware
        for module in modules if isinstance(modules, list) else ():
            if isinstance(module, Mapping) and module.get("name") == "ota" and module.get("sw_ver"):
                self.firmware = f"Bambu Lab {module['sw_ver']}"
        return self.firmware != before


def _temperatures(f: Mapping[str, Any]) -> dict[str, Heater]:
    temps: dict[str, Heater] = {}
    for key, actual, target in (("T0", "nozzle_temper", "nozzle_target_temper"),
                                ("B", "bed_temper", "bed_target_temper"),
                                ("C", "chamber_temper", None)):
        now = _float(f.get(actual))
        if now is not None:
            temps[key] = Heater(actual=now, target=_float(f.get(target)) if target else None)
    return temps


def _job_file(f: Mapping[str, Any]) -> str | None:
    """The file the printer prints: its name as uploaded when any field carries it.

    A plain G-code print reports ``gcode_file``; a 3MF project reports the plate
    inside it there on some models and the project's name (no extension) in
    ``subtask_name``.
    """
    gcode_file = f.get("gcode_file") if isinstance(f.get("gcode_file"), str) else ""
    subtask = f.get("subtask_name") if isinstance(f.get("subtask_name"), str) else ""
    for candidate in (gcode_file, subtask, f"{subtask}.3mf" if subtask else ""):
        if candidate and job_id_in(candidate):
            return candidate
    return gcode_file or subtask or None


def _materials(f: Mapping[str, Any]) -> tuple[LoadedMaterial, ...]:
    found: list[LoadedMaterial] = []
    ams = f.get("ams")
    units = ams.get("ams") if isinstance(ams, Mapping) else None
    for unit in units if isinstance(units, list) else ():
        if not isinstance(unit, Mapping) or not isinstance(unit.get("tray"), list):
            continue
        for tray in unit["tray"]:
            material = _tray(f"ams{unit.get('id', '?')}/{tray.get('id', '?')}", tray) \
                if isinstance(tray, Mapping) else None
            if material:
                found.append(material)
    external = f.get("vt_tray")
    if isinstance(external, Mapping) and (material := _tray("external", external)):
        found.append(material)
    return tuple(found)


def _tray(slot: str, tray: Mapping[str, Any]) -> LoadedMaterial | None:
    kind = tray.get("tray_type")
    if not isinstance(kind, str) or not kind.strip():
        return None  # an empty tray
    color = tray.get("tray_color")
    color_hex = f"#{color[:6].lower()}" if isinstance(color, str) and _is_hex(color[:6]) else None
    remain = _float(tray.get("remain"))
    return LoadedMaterial(slot=slot[:32], material=kind.strip()[:32], color_hex=color_hex,
                          remaining_pct=remain if remain is not None and 0 <= remain <= 100 else None)


def _is_hex(text: str) -> bool:
    return len(text) == 6 and all(c in "0123456789abcdefABCDEF" for c in text)


def _float(value: Any) -> float | None:
    """Numbers arrive as numbers or as strings, depending on the field and the model."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None
