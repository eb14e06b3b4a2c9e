"""What a G-code file declares about the machine it was sliced for, read before the file is planned.

PrusaSlicer, SuperSlicer and OrcaSlicer append their whole configuration as
``; key = value`` comments, including the machine limits they estimated
with (``; machine_max_acceleration_extruding = 1500,1250``: normal mode,
then silent mode). Many presets only *declare* the limits there
(``machine_limits_usage = time_estimate_only``) and never write them as
M201/M203/M204/M205, so a planner that reads only commands plans with the
wrong machine. Cura states no limits but names its machine (its header's
``TARGET_MACHINE.NAME`` or the ``definition`` in its trailing settings).

The block sits at the end of the file (Bambu Studio writes it in its
header, after the thumbnails), so the header and the tail are read first;
the rest of the file is never held.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

HEAD_BYTES = 64 * 1024
TAIL_BYTES = 512 * 1024
MAX_HEADER_BYTES = 8 * 1024 * 1024  # comments before the first move: thumbnails and a config block

Mode = Literal["normal", "silent"]

# PrusaSlicer's names; OrcaSlicer and Bambu Studio spell the feed rates machine_max_speed_*.
_AXIS_KEYS = {
    "max_feed": ("machine_max_feedrate_", "machine_max_speed_"),
    "max_accel": ("machine_max_acceleration_",),
    "jerk": ("machine_max_jerk_",),
}
_FLAVORS = {"marlin": "marlin", "marlin2": "marlin2", "marlinfirmware": "marlin2", "klipper": "klipper",
            "reprapfirmware": "reprapfirmware", "reprap": "reprapfirmware", "griffin": "marlin2"}


@dataclass
class DeclaredMachine:
    """Limits a file declares; ``None`` where it says nothing. Per-axis lists are X, Y, Z, E."""

    slicer: str | None = None
    printer: str | None = None
    flavor: str | None = None  # as our machine models name firmwares
    mode: Mode = "normal"
    silent_available: bool = False
    max_feed: list[float | None] = field(default_factory=lambda: [None] * 4)
    max_accel: list[float | None] = field(default_factory=lambda: [None] * 4)
    jerk: list[float | None] = field(default_factory=lambda: [None] * 4)
    accel_print: float | None = None
    accel_retract: float | None = None
    accel_travel: float | None = None
    min_extruding_rate: float | None = None
    min_travel_rate: float | None = None
    junction_deviation: float | None = None

    @property
    def has_limits(self) -> bool:
        return any(v is not None for v in (*self.max_feed, *self.max_accel, *self.jerk, self.accel_print))


def _pick(value: str, mode: Mode, zero_ok: bool = False) -> float | None:
    """``"1500,1250"`` → 1500 in normal mode, 1250 in silent; one value serves both. ``None`` when unusable."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts:
        return None
    raw = parts[1] if mode == "silent" and len(parts) > 1 else parts[0]
    try:
        number = float(raw)
    except ValueError:
        return None
    return number if number > 0 or (zero_ok and number == 0) else None


def _comment_pairs(lines: list[str]) -> dict[str, str]:
    """``; key = value`` comments (PrusaSlicer, SuperSlicer, OrcaSlicer); later values win."""
    keys: dict[str, str] = {}
    for line in lines:
        if not line.startswith(";"):
            continue
        key, eq, value = line[1:].partition("=")
        key = key.strip()
        if eq and key and " " not in key:
            keys[key] = value.strip()
    return keys


def _cura(lines: list[str]) -> tuple[str | None, dict[str, str]]:
    """Cura's machine name and the settings its ``;SETTING_3`` trailer serialises (only changed ones)."""
    name = None
    for line in lines:
        if line.upper().startswith(";TARGET_MACHINE.NAME:"):
            name = line.split(":", 1)[1].strip()
    blob = "".join(line[len(";SETTING_3 "):] for line in lines if line.startswith(";SETTING_3 "))
    keys: dict[str, str] = {}
    if blob:
        try:
            # Cura doubles backslashes and escapes line breaks so the JSON survives as comments.
            stacks = json.loads(blob.replace("\\\\", "\\"))
        except ValueError:
            stacks = {}
        texts = [stacks.get("global_quality", "")] + list(stacks.get("extruder_quality", []))
        for text in texts if isinstance(texts, list) else []:
            for line in str(text).splitlines():
                key, eq, value = line.partition("=")
                if eq:
                    keys.setdefault(key.strip(), value.strip())
        name = name or keys.get("definition")
    return name, keys


def _read_ends(path: Path) -> list[str]:
    """The header up to the first move (Bambu Studio puts its block after large thumbnails), and the tail."""
    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)
        while len(head) < MAX_HEADER_BYTES and b"\nG1 " not in head and b"\nG0 " not in head:
            more = f.read(HEAD_BYTES)
            if not more:
                break
            head += more
        f.seek(0, 2)
        size = f.tell()
        if size > len(head):
            f.seek(max(len(head), size - TAIL_BYTES))
            tail = f.read()
        else:
            tail = b""
    text = (head + b"\n" + tail).decode("utf-8", errors="replace")
    return [line.strip() for line in text.splitlines()]


def read_declared(path: Path, mode: Mode = "normal") -> DeclaredMachine:
    """The machine and limits ``path`` declares, for ``mode`` when the file offers a silent mode."""
    return declared_from_lines(_read_ends(path), mode)


def declared_from_lines(lines: list[str], mode: Mode = "normal") -> DeclaredMachine:
    keys = _comment_pairs(lines)
    cura_name, cura_keys = _cura(lines)
    d = DeclaredMachine()
    for line in lines:
        lower = line.lower()
        if d.slicer is None and lower.startswith(("; generated by ", "; generated with ", ";generated with ")):
            d.slicer = line.lstrip("; ").split(" ", 2)[2].split(" on ")[0].strip()
        elif d.flavor is None and lower.startswith(";flavor:"):
            d.flavor = _FLAVORS.get(lower[8:].split("(")[0].strip().replace(" ", ""))
    d.printer = keys.get("printer_model") or keys.get("printer_settings_id") or cura_name or None
    if "gcode_flavor" in keys:
        d.flavor = _FLAVORS.get(keys["gcode_flavor"].strip().lower(), d.flavor)
    usage = keys.get("machine_limits_usage", "").strip()
    d.silent_available = keys.get("silent_mode", "0").strip() == "1"
    d.mode = mode if d.silent_available else "normal"
    if usage == "ignore":
        return d  # the slicer was told the limits mean nothing; the machine model decides
    source = {**cura_keys, **keys}
    for attr, prefixes in _AXIS_KEYS.items():
        target = getattr(d, attr)
        for i, axis in enumerate("xyze"):
            for prefix in prefixes:
                if prefix + axis in source:
                    target[i] = _pick(source[prefix + axis], d.mode)
    if "machine_max_jerk_xy" in source:  # Cura
        d.jerk[0] = d.jerk[1] = _pick(source["machine_max_jerk_xy"], d.mode)
    d.accel_print = _pick(source.get("machine_max_acceleration_extruding", ""), d.mode)
    d.accel_retract = _pick(source.get("machine_max_acceleration_retracting", ""), d.mode)
    d.accel_travel = _pick(source.get("machine_max_acceleration_travel", ""), d.mode)
    d.min_extruding_rate = _pick(source.get("machine_min_extruding_rate", ""), d.mode, zero_ok=True)
    d.min_travel_rate = _pick(source.get("machine_min_travel_rate", ""), d.mode, zero_ok=True)
    d.junction_deviation = _pick(source.get("machine_max_junction_deviation", ""), d.mode)
    return d
