"""Reading Blender's command-line output, one line at a time. Pure functions, no I/O.

Blender has printed the same render status line since 2.7x, built from
fields joined by `` | `` (this one from Blender 3.4, wrapped here):

    Fra:1 Mem:9.50M (Peak 10.20M) | Time:00:00.02 | Remaining:00:00.00
        | Mem:0.86M, Peak:0.86M | Scene, ViewLayer | Sample 1/8

The first field is Blender's own (frame, host memory); the rest is the render
engine's status text, which differs by engine and version: Cycles adds
``Remaining:`` and its device memory, Cycles 2.7x says ``Path Tracing Tile 1/16,
Sample 10/10``, Eevee says ``Rendering 5 / 16 samples``, and 2.7x wrote host
memory as ``Mem:12.32M (0.00M, Peak 14.83M)``. Newer builds may put a run
timestamp in front (``00:01.234  Mem:12.3M | Sample 12/64``) and drop ``Fra:``.
So each field is recognised on its own and unknown fields are kept as the
status text rather than rejected: a new Blender should degrade to fewer
numbers, not to no progress at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class LineKind(StrEnum):
    STATUS = "status"  # a render status line (frame, memory, samples, phase)
    SAVED = "saved"  # an output file was written
    FRAME_TIME = "frame_time"  # Blender's own total for the frame just saved
    LOADED = "loaded"  # the .blend file was read
    ERROR = "error"  # Blender or its Python said something failed
    QUIT = "quit"  # Blender is exiting normally


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    kind: LineKind
    frame: int | None = None
    samples_done: int | None = None
    samples_total: int | None = None
    elapsed_s: float | None = None
    remaining_s: float | None = None
    mem_mb: float | None = None
    peak_mb: float | None = None
    device_mem_mb: float | None = None
    device_peak_mb: float | None = None
    saving_s: float | None = None
    path: str | None = None
    message: str | None = None


# Blender's timecodes: [HH:]MM:SS.ff, fractions of two or three digits.
_TIMECODE = r"(?:\d+:)?\d{1,2}:\d{2}(?:\.\d+)?"
_NUMBER = r"\d+(?:\.\d+)?"

_LEADING_TIME = re.compile(rf"^(?P<t>{_TIMECODE})\s+(?P<rest>\S.*)$")
_FRAME = re.compile(r"^Fra:(?P<frame>-?\d+)(?:\s+(?P<rest>.*))?$")
# "Mem:9.50M (Peak 10.20M)", "Mem:12.32M (0.00M, Peak 14.83M)" or a bare "Mem:12.3M".
_HOST_MEM = re.compile(rf"^Mem:(?P<mem>{_NUMBER})M(?:\s*\((?:{_NUMBER}M,\s*)?Peak\s+(?P<peak>{_NUMBER})M\))?$")
# Cycles' device memory: "Mem:0.86M, Peak:0.86M".
_DEVICE_MEM = re.compile(rf"^Mem:(?P<mem>{_NUMBER})M,\s*Peak:(?P<peak>{_NUMBER})M$")
_ELAPSED = re.compile(rf"^Time:\s*(?P<t>{_TIMECODE})$")
_REMAINING = re.compile(rf"^Remaining:\s*(?P<t>{_TIMECODE})$")
_SAMPLES = (
    re.compile(r"\bSample (?P<done>\d+)\s*/\s*(?P<total>\d+)"),
    re.compile(r"\bRendering (?P<done>\d+)\s*/\s*(?P<total>\d+) samples"),
)
_SAVED = re.compile(r"^Saved: '(?P<path>.*)'")
_FRAME_TIME = re.compile(rf"^Time: (?P<t>{_TIMECODE})(?: \(Saving: (?P<saving>{_TIMECODE})\))?$")
_LOADED = re.compile(r"^Read blend: (?P<path>.+)$")
_ERROR = re.compile(r"^(?:Error: |Traceback \(most recent call last\):)")


def parse_timecode(text: str) -> float | None:
    """Seconds from Blender's ``[HH:]MM:SS.ff``; None when it is not one."""
    if not re.fullmatch(_TIMECODE, text):
        return None
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def parse_line(line: str) -> ProgressUpdate | None:
    """What one output line says, or None for lines that carry nothing we use."""
    text = line.strip()
    if not text:
        return None
    elapsed: float | None = None
    stamped = _LEADING_TIME.match(text)
    if stamped:
        elapsed = parse_timecode(stamped["t"])
        text = stamped["rest"]

    if m := _SAVED.match(text):
        return ProgressUpdate(LineKind.SAVED, path=m["path"])
    if m := _FRAME_TIME.match(text):
        saving = parse_timecode(m["saving"]) if m["saving"] else None
        return ProgressUpdate(LineKind.FRAME_TIME, elapsed_s=parse_timecode(m["t"]), saving_s=saving)
    if _ERROR.match(text):
        return ProgressUpdate(LineKind.ERROR, message=text)
    if m := _LOADED.match(text):
        return ProgressUpdate(LineKind.LOADED, path=m["path"].strip())
    if text == "Blender quit":
        return ProgressUpdate(LineKind.QUIT)
    return _parse_status(text, elapsed)


def _parse_status(text: str, elapsed: float | None) -> ProgressUpdate | None:
    fields = [f.strip() for f in text.split(" | ")]
    frame: int | None = None
    if m := _FRAME.match(fields[0]):
        frame = int(m["frame"])
        fields[0] = (m["rest"] or "").strip()
    elif elapsed is None:
        # Without "Fra:" or a leading timestamp this is some other program's
        # line that merely contains a bar (an add-on's print, a warning).
        return None

    values: dict[str, float | int | None] = {}
    status: list[str] = []
    for field in fields:
        if not field:
            continue
        if m := _DEVICE_MEM.match(field):
            values["device_mem_mb"], values["device_peak_mb"] = float(m["mem"]), float(m["peak"])
        elif m := _HOST_MEM.match(field):
            values["mem_mb"] = float(m["mem"])
            values["peak_mb"] = float(m["peak"]) if m["peak"] else None
        elif m := _ELAPSED.match(field):
            values["elapsed_s"] = parse_timecode(m["t"])
        elif m := _REMAINING.match(field):
            values["remaining_s"] = parse_timecode(m["t"])
        else:
            status.append(field)
            for pattern in _SAMPLES:
                if s := pattern.search(field):
                    values["samples_done"], values["samples_total"] = int(s["done"]), int(s["total"])
                    break
    if frame is None and not values:
        return None
    values.setdefault("elapsed_s", elapsed)
    return ProgressUpdate(
        LineKind.STATUS,
        frame=frame,
        message=" | ".join(status) or None,
        **values,  # type: ignore[arg-type]
    )
