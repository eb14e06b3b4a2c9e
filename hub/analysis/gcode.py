"""One streaming pass over a G-code file: metadata, thumbnails, layers, extrusion, extent and time.

Files of hundreds of MB are read in fixed-size chunks and never held whole;
memory stays bounded by the chunk, the longest accepted line, the thumbnails
cap and the planner's window.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from hub.analysis.declared import DeclaredMachine, read_declared
from hub.analysis.geometry import BoundingBox
from hub.analysis.interpreter import Interpreter, Move, parse_line
from hub.analysis.machines import GENERIC, MachineModel, match_machine
from hub.analysis.metadata import MetadataReader, SlicerMetadata, Thumbnail
from hub.analysis.motion import EstimatorSettings, MotionPlanner, TimeEstimate

log = structlog.get_logger("farmhand.analysis")

CHUNK = 1 << 20
MAX_LINE = 64 * 1024
MAX_PROBLEMS = 20
_LAYER_Z_EPSILON = 1e-4


class ToolUsage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: int
    filament_mm: float = Field(description="net filament fed: retractions that are undone do not count twice")
    volume_cm3: float
    grams: float | None = Field(None, description="when the file states the filament density")


class GcodeAnalysis(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lines: int
    bytes: int
    layers: int
    layers_from: Literal["tags", "z", "none"]
    extrusion: list[ToolUsage]
    bbox: BoundingBox | None = Field(None, description="extent of extruding moves, mm")
    metadata: SlicerMetadata
    thumbnails: list[Thumbnail]
    estimate: TimeEstimate
    problems: list[str] = Field(default_factory=list, description="first malformed lines and values met")
    malformed: int = 0


class _Stats:
    """Interpreter listener: extent of extrusion, filament per tool and layers by Z."""

    def __init__(self) -> None:
        self.fed: dict[int, float] = {}
        self.retracted: dict[int, float] = {}
        self.lo = [math.inf, math.inf, math.inf]
        self.hi = [-math.inf, -math.inf, -math.inf]
        self.z_layers = 0
        self.last_layer_z = -math.inf

    def command(self, code: str, words: dict[str, float]) -> None:
        pass

    def move(self, m: Move) -> None:
        de = m.de
        if de == 0:
            return
        tool = m.tool
        debt = self.retracted.get(tool, 0.0)
        if de < 0:
            self.retracted[tool] = debt - de
            return
        # Pushing back what was retracted is not new filament.
        if de > debt:
            self.fed[tool] = self.fed.get(tool, 0.0) + de - debt
            self.retracted[tool] = 0.0
        else:
            self.retracted[tool] = debt - de
        if m.dx == 0 and m.dy == 0:
            return
        lo, hi = self.lo, self.hi
        for i, (a, d) in enumerate(((m.x, m.dx), (m.y, m.dy), (m.z, m.dz))):
            b = a + d
            if a < lo[i]:
                lo[i] = a
            if b < lo[i]:
                lo[i] = b
            if a > hi[i]:
                hi[i] = a
            if b > hi[i]:
                hi[i] = b
        z = m.z + m.dz
        if z > self.last_layer_z + _LAYER_Z_EPSILON:
            self.z_layers += 1
            self.last_layer_z = z

    def bbox(self) -> BoundingBox | None:
        if self.lo[0] == math.inf:
            return None
        return BoundingBox(min=tuple(self.lo), max=tuple(self.hi))  # type: ignore[arg-type]


def _lines(f: BinaryIO, problems: list[str]) -> Iterator[str]:
    """Text lines from fixed-size chunks; a line longer than ``MAX_LINE`` is dropped, never buffered whole."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    carry = ""
    dropping = False  # inside an over-long line, already reported

    def too_long() -> None:
        problems.append(f"line longer than {MAX_LINE} characters skipped")

    while True:
        chunk = f.read(CHUNK)
        text = decoder.decode(chunk, final=not chunk)
        if not chunk and not text:
            break
        parts = text.split("\n")
        last = parts.pop()
        if parts:
            first = carry + parts[0]
            if dropping:
                dropping = False
            elif len(first) > MAX_LINE:
                too_long()
            else:
                yield first
            for part in parts[1:]:
                if len(part) > MAX_LINE:
                    too_long()
                else:
                    yield part
            carry = ""
        if not dropping:
            carry += last
            if len(carry) > MAX_LINE:
                too_long()
                carry, dropping = "", True
    if carry and not dropping:
        yield carry


def _check_text(path: Path) -> None:
    with path.open("rb") as f:
        head = f.read(4096)
    if head.startswith(b"GCDE"):
        raise ValueError(f"{path.name}: binary G-code (.bgcode) is not supported; export plain G-code")
    if b"\0" in head:
        raise ValueError(f"{path.name}: not a G-code text file")


def analyze_gcode(path: Path, machine: MachineModel | None = None,
                  settings: EstimatorSettings | None = None) -> GcodeAnalysis:
    """Analyse a G-code file in one pass (after a look at its head and tail).

    The estimator's limits, weakest first: ``machine`` (else the machine the
    file names, else a generic printer of the file's firmware flavour); the
    limits the slicer declared in its configuration block; then the file's
    own M201/M203/M204/M205/SET_VELOCITY_LIMIT lines as the printer meets them.
    """
    _check_text(path)
    declared = read_declared(path, (settings or EstimatorSettings()).mode)
    machine = machine or _machine_for(declared)
    meta = MetadataReader()
    stats = _Stats()
    planner = MotionPlanner(machine, settings, declared)
    interpreter = Interpreter([planner, stats])
    problems: list[str] = []
    malformed = 0
    n = 0
    layer_tags = 0
    cura_layers = -1
    with path.open("rb") as f:
        for line in _lines(f, problems):
            n += 1
            first = line[:1]
            if first == ";":
                text = line[1:]
                if meta.in_thumbnail:
                    meta.comment(text)
                elif text.startswith("LAYER_CHANGE") or text.startswith(" CHANGE_LAYER"):
                    layer_tags += 1
                elif text.startswith("LAYER:"):
                    try:
                        cura_layers = max(cura_layers, int(text[6:]))
                    except ValueError:
                        pass
                else:
                    meta.comment(text)
                continue
            try:
                parsed = parse_line(line)
                if parsed is not None:
                    interpreter.execute(*parsed)
            except (ValueError, ArithmeticError) as exc:
                malformed += 1
                if len(problems) < MAX_PROBLEMS:
                    problems.append(f"line {n}: {exc}: {line[:80]!r}")
    size = path.stat().st_size
    metadata = meta.metadata()
    problems = (problems + meta.problems)[:MAX_PROBLEMS]
    if layer_tags:
        layers, layers_from = layer_tags, "tags"
    elif cura_layers >= 0:
        layers, layers_from = cura_layers + 1, "tags"
    elif stats.z_layers:
        layers, layers_from = stats.z_layers, "z"
    else:
        layers, layers_from = 0, "none"
    analysis = GcodeAnalysis(
        lines=n, bytes=size, layers=layers, layers_from=layers_from,
        extrusion=_usage(stats, metadata, machine), bbox=stats.bbox(), metadata=metadata,
        thumbnails=meta.thumbnails, estimate=planner.result(), problems=problems, malformed=malformed,
    )
    if malformed or problems:
        log.warning("gcode_problems", path=str(path), malformed=malformed, first=problems[:3])
    return analysis


def _machine_for(declared: DeclaredMachine) -> MachineModel:
    known = match_machine(declared.printer)
    if known is not None:
        return known
    if declared.flavor and declared.flavor != GENERIC.firmware:
        return GENERIC.model_copy(update={"firmware": declared.flavor})
    return GENERIC


def _usage(stats: _Stats, metadata: SlicerMetadata, machine: MachineModel) -> list[ToolUsage]:
    out = []
    for tool in sorted(stats.fed):
        diameters = metadata.filament_diameter or [machine.filament_diameter]
        diameter = diameters[min(tool, len(diameters) - 1)]
        mm = stats.fed[tool]
        cm3 = mm * math.pi * (diameter / 2) ** 2 / 1000.0
        grams = None
        if metadata.filament_density:
            density = metadata.filament_density[min(tool, len(metadata.filament_density) - 1)]
            grams = cm3 * density if density > 0 else None
        out.append(ToolUsage(tool=tool, filament_mm=mm, volume_cm3=cm3, grams=grams))
    return out
