"""The scheduler's view of the farm, read from the store as plain ``matching`` data.

A printer is free when its node is online and lists it, it is idle, runs no
job, prints (a render node does not) and — unless its profile ejects parts by
itself — an operator confirmed its bed clear after its last print.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

from sqlite_utils import Database

from hub.analysis import MachineModel, load_machine, machine_ids
from hub.slicing import PROFILES_DIR

from .matching import Need, Printer
from .schemas import ACTIVE_STATES, JobState

_ACTIVE = tuple(s.value for s in ACTIVE_STATES)

FREE_PRINTERS = f"""
    SELECT d.node, d.id, d.model, p.nozzle_diameter, p.tags,
           f.material, f.color_hex, f.density, f.diameter, s.initial_weight - s.used_weight AS grams_left
    FROM devices d JOIN nodes n ON n.id = d.node
    LEFT JOIN device_profiles p ON p.node = d.node AND p.device = d.id
    LEFT JOIN spools s ON s.node = d.node AND s.device = d.id
    LEFT JOIN filaments f ON f.id = s.filament_id
    WHERE n.online = 1 AND d.listed = 1 AND d.state = 'idle' AND d.render IS NULL
      AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.node = d.node AND j.device = d.id
                      AND j.state IN ({', '.join('?' * len(_ACTIVE))}))
      AND NOT (p.node IS NOT NULL AND p.auto_eject = 0 AND (
          COALESCE(p.last_print_at, '') > COALESCE(p.bed_cleared_at, '')
          OR EXISTS (SELECT 1 FROM jobs j WHERE j.node = d.node AND j.device = d.id AND j.started_at IS NOT NULL
                     AND j.finished_at IS NOT NULL AND j.finished_at > COALESCE(p.bed_cleared_at, ''))))
    ORDER BY d.updated_at, d.node, d.id
"""

QUEUED = """
    SELECT j.id, j.priority, j.pin_node, j.pin_device, r.material, r.color, r.nozzle_diameter, r.machine_model,
           r.mesh, r.size_x, r.size_y, r.size_z, r.filament_mm, r.tags, r.deadline, r.rank, r.sliced_material
    FROM jobs j LEFT JOIN job_requirements r ON r.job_id = j.id
    WHERE j.state = ? AND COALESCE(r.held, 0) = 0
"""


@lru_cache(maxsize=64)
def machine(model: str | None) -> MachineModel | None:
    if model is None or model not in _known_models():
        return None
    return load_machine(model)


@lru_cache(maxsize=1)
def _known_models() -> frozenset[str]:
    return frozenset(machine_ids())


@lru_cache(maxsize=64)
def sliceable(model: str | None) -> bool:
    return model is not None and (PROFILES_DIR / "printer" / f"{model}.ini").is_file()


def filament_mm(grams: float, density_g_cm3: float, diameter_mm: float) -> float:
    """Length of filament that weighs ``grams``."""
    return grams * 1000.0 / (density_g_cm3 * math.pi * (diameter_mm / 2) ** 2)


def filament_grams(mm: float, density_g_cm3: float, diameter_mm: float) -> float:
    return mm * math.pi * (diameter_mm / 2) ** 2 / 1000.0 * density_g_cm3


def normalize_color(color: str | None) -> str | None:
    """Spoolman writes colours as hex without '#'; people type them with it and in either case."""
    if color is None:
        return None
    return color.strip().lstrip("#").upper() or None


def _printer(r: dict[str, Any]) -> Printer:
    m = machine(r["model"])
    nozzle = r["nozzle_diameter"] if r["nozzle_diameter"] is not None else (m.nozzle_diameter if m else None)
    left = None
    if r["grams_left"] is not None and r["density"]:
        left = filament_mm(max(r["grams_left"], 0.0), r["density"], r["diameter"])
    return Printer(
        node=r["node"], device=r["id"], model=r["model"], nozzle=nozzle,
        build=(m.build_volume.x, m.build_volume.y, m.build_volume.z) if m else None,
        material=r["material"], color=normalize_color(r["color_hex"]), filament_mm=left,
        tags=frozenset(json.loads(r["tags"])) if r["tags"] else frozenset(), sliceable=sliceable(r["model"]),
    )


def free_printers(db: Database) -> list[Printer]:
    return [_printer(r) for r in db.query(FREE_PRINTERS, _ACTIVE)]


def _need(r: dict[str, Any]) -> Need:
    size = (r["size_x"], r["size_y"], r["size_z"]) if r["size_x"] is not None else None
    return Need(
        job_id=r["id"], priority=r["priority"], deadline=r["deadline"],
        rank=r["rank"] if r["rank"] is not None else float(r["id"]),
        pin=(r["pin_node"], r["pin_device"]) if r["pin_node"] else None,
        material=r["material"], color=r["color"], nozzle=r["nozzle_diameter"], machine_model=r["machine_model"],
        mesh=bool(r["mesh"]), size=size, filament_mm=r["filament_mm"],
        tags=frozenset(json.loads(r["tags"])) if r["tags"] else frozenset(), prefer_material=r["sliced_material"],
    )


def queued_needs(db: Database) -> list[Need]:
    return [_need(r) for r in db.query(QUEUED, (JobState.QUEUED.value,))]


def queued_need(db: Database, job_id: int) -> Need | None:
    """One job's rules, when it is queued and not held."""
    row = next(db.query(QUEUED + " AND j.id = ?", (JobState.QUEUED.value, job_id)), None)
    return _need(row) if row else None
