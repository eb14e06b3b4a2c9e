"""Which queued job goes to which free printer: pure functions over plain data.

The scheduler loads a snapshot (``Printer`` and ``Need`` rows) from the store,
calls ``plan`` and commits what it returns; nothing here touches the database,
so every rule is testable on its own and the whole pass is measured by
``python -m bench.scheduler``.

Rules. A job runs only on a printer that
* is the printer it is pinned to, when it is pinned;
* has the job's material type and colour loaded, when the job names them (a
  printer with no spool loaded has neither);
* has the job's nozzle diameter;
* was the machine model the G-code was made for, or, for a mesh, is a model
  we can slice for;
* has a build volume the part fits (any quarter turn about Z), when its model is known;
* carries every tag the job asks for;
* holds enough filament on its loaded spool for the whole job.

Jobs are taken by priority (high first), then earliest deadline, then their
place in the queue (age, or where an operator moved them). Among the printers
a job may use, one already loaded with the material the G-code was sliced for
comes first, so nobody has to change a spool.

Speed. Free printers are grouped by everything the rules look at except the
filament left on the spool; a job's compatible groups are worked out once per
distinct set of requirements, so 10,000 jobs from a few hundred distinct
requirement sets cost a few hundred group checks plus one cheap look per job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# Nozzles are specified to 0.05 mm; anything closer is the same nozzle written twice.
NOZZLE_TOLERANCE = 0.01
NO_DEADLINE = "\uffff"  # sorts after every ISO timestamp


def _same_text(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.casefold() == b.casefold()


def fits(size: tuple[float, float, float], volume: tuple[float, float, float]) -> bool:
    """The part's extent fits the build volume as placed or turned a quarter about Z."""
    x, y, z = size
    bx, by, bz = volume
    if z > bz + 1e-6:
        return False
    return (x <= bx + 1e-6 and y <= by + 1e-6) or (y <= bx + 1e-6 and x <= by + 1e-6)


@dataclass(frozen=True, slots=True)
class Printer:
    node: str
    device: str
    model: str | None = None
    nozzle: float | None = None
    build: tuple[float, float, float] | None = None
    material: str | None = None
    color: str | None = None
    filament_mm: float | None = None  # left on the loaded spool; None when unknown
    tags: frozenset[str] = frozenset()
    sliceable: bool = False  # we have a slicing profile for its model

    @property
    def ref(self) -> tuple[str, str]:
        return (self.node, self.device)

    def group(self) -> tuple:
        """Everything the rules compare except the filament left, which differs printer by printer."""
        return (self.model, self.nozzle, self.build, (self.material or "").casefold() or None,
                (self.color or "").casefold() or None, self.tags, self.sliceable)


@dataclass(frozen=True, slots=True)
class Need:
    job_id: int
    priority: int = 0
    deadline: str | None = None
    rank: float = 0.0
    pin: tuple[str, str] | None = None
    material: str | None = None
    color: str | None = None
    nozzle: float | None = None
    machine_model: str | None = None
    mesh: bool = False
    size: tuple[float, float, float] | None = None
    filament_mm: float | None = None
    tags: frozenset[str] = frozenset()
    prefer_material: str | None = None  # what the G-code was sliced with; a soft preference

    def order(self) -> tuple[int, str, float, int]:
        return (-self.priority, self.deadline or NO_DEADLINE, self.rank, self.job_id)

    def signature(self) -> tuple:
        return (self.material, self.color, self.nozzle, self.machine_model, self.mesh, self.size, self.tags,
                self.prefer_material)


def why_not(need: Need, printer: Printer) -> str | None:
    """The first rule that keeps ``need`` off ``printer``; None when it may run there."""
    if need.pin is not None and need.pin != printer.ref:
        return f"pinned to {need.pin[0]}/{need.pin[1]}"
    reason = _group_refusal(need, printer)
    if reason:
        return reason
    return _filament_refusal(need, printer)


def _group_refusal(need: Need, p: Printer) -> str | None:
    # A printer with no spool loaded takes no job that names a material or colour: the
    # farm does not know what is on it, and a wrong filament wastes the print.
    if need.material is not None and not _same_text(need.material, p.material):
        return f"needs {need.material} loaded; {_loaded(p, p.material)}"
    if need.color is not None and not _same_text(need.color, p.color):
        return f"needs colour {need.color} loaded; {_loaded(p, p.color)}"
    if need.nozzle is not None and (p.nozzle is None or abs(need.nozzle - p.nozzle) > NOZZLE_TOLERANCE):
        return f"needs a {need.nozzle:g} mm nozzle; it has {'an unknown' if p.nozzle is None else f'{p.nozzle:g} mm'}"
    if need.mesh:
        if not p.sliceable:
            return f"a mesh, and there is no slicing profile for model {p.model or 'unknown'}"
    elif need.machine_model is not None and need.machine_model != p.model:
        return f"G-code made for {need.machine_model}; the printer is {p.model or 'of unknown model'}"
    # A printer of unknown model may be big enough; only a known build volume can refuse.
    if need.size is not None and p.build is not None and not fits(need.size, p.build):
        return "the part does not fit its build volume"
    missing = need.tags - p.tags
    if missing:
        return f"lacks tags {', '.join(sorted(missing))}"
    return None


def _loaded(p: Printer, value: str | None) -> str:
    if p.material is None:
        return "no spool is loaded"
    return f"it has {value}" if value else "its spool has none recorded"


def _filament_refusal(need: Need, p: Printer) -> str | None:
    if need.filament_mm is not None and p.filament_mm is not None and need.filament_mm > p.filament_mm:
        return f"needs {need.filament_mm:.0f} mm of filament; the loaded spool holds {p.filament_mm:.0f} mm"
    return None


@dataclass
class _Group:
    key: tuple
    sample: Printer
    free: list[Printer] = field(default_factory=list)


def plan(needs: Iterable[Need], printers: Iterable[Printer]) -> list[tuple[int, Printer]]:
    """(job id, printer) pairs for this pass: each free printer gets at most one job."""
    groups: dict[tuple, _Group] = {}
    by_ref: dict[tuple[str, str], tuple[_Group, Printer]] = {}
    for p in printers:
        key = p.group()
        g = groups.get(key)
        if g is None:
            g = groups[key] = _Group(key, p)
        g.free.append(p)
        by_ref[p.ref] = (g, p)
    free_total = len(by_ref)
    if not free_total:
        return []
    compatible: dict[tuple, list[_Group]] = {}
    out: list[tuple[int, Printer]] = []
    for need in sorted(needs, key=Need.order):
        if need.pin is not None:
            chosen = _pinned(need, by_ref)
        else:
            sig = need.signature()
            options = compatible.get(sig)
            if options is None:
                options = compatible[sig] = _rank(need, [g for g in groups.values()
                                                        if _group_refusal(need, g.sample) is None])
            chosen = _first_free(need, options)
        if chosen is None:
            continue
        group, printer = by_ref.pop(chosen.ref)
        group.free.remove(printer)
        out.append((need.job_id, printer))
        free_total -= 1
        if not free_total:
            break
    return out


def _rank(need: Need, options: list[_Group]) -> list[_Group]:
    if need.prefer_material is None or need.material is not None:
        return options
    # Stable: printers keep their idle order within each half.
    return sorted(options, key=lambda g: not _same_text(need.prefer_material, g.sample.material))


def _pinned(need: Need, by_ref: dict[tuple[str, str], tuple[_Group, Printer]]) -> Printer | None:
    assert need.pin is not None
    entry = by_ref.get(need.pin)
    if entry is None:
        return None
    return entry[1] if why_not(need, entry[1]) is None else None


def _first_free(need: Need, options: list[_Group]) -> Printer | None:
    for g in options:
        for p in g.free:
            if _filament_refusal(need, p) is None:
                return p
    return None
