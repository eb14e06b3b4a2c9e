"""Machine models: what a printer can physically do, read from ``firmware-profiles/machines/*.toml``.

The print-time estimator starts from these limits and lets the G-code's own
``M201/M203/M204/M205`` lines override them, as the firmware would.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from protocol.config import ConfigError, load

MACHINES_DIR = Path(__file__).resolve().parents[2] / "firmware-profiles" / "machines"

Firmware = Literal["marlin", "marlin2", "klipper", "reprapfirmware", "bambu"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuildVolume(_Strict):
    x: PositiveFloat
    y: PositiveFloat
    z: PositiveFloat


class Axes(_Strict):
    x: PositiveFloat
    y: PositiveFloat
    z: PositiveFloat
    e: PositiveFloat


class Accelerations(_Strict):
    """Default accelerations (mm/s²) the firmware boots with: ``M204 P`` / ``R`` / ``T``."""

    print: PositiveFloat
    retract: PositiveFloat
    travel: PositiveFloat


class Power(_Strict):
    idle: float = Field(ge=0)
    printing: float = Field(ge=0)


class MachineModel(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")
    name: str
    firmware: Firmware
    nozzle_diameter: PositiveFloat = 0.4
    filament_diameter: PositiveFloat = 1.75
    build_volume: BuildVolume
    max_feedrate: Axes = Field(description="mm/s per axis (M203)")
    max_acceleration: Axes = Field(description="mm/s² per axis (M201)")
    acceleration: Accelerations
    jerk: Axes = Field(description="instantaneous speed change per axis, mm/s (M205 X/Y/Z/E)")
    junction_deviation: PositiveFloat | None = Field(
        None, description="mm; when set the planner rounds corners by junction deviation instead of jerk"
    )
    min_extruding_rate: float = Field(0.0, ge=0, description="mm/s (M205 S)")
    min_travel_rate: float = Field(0.0, ge=0, description="mm/s (M205 T)")
    power: Power
    slicer_names: list[str] = Field(
        default_factory=list,
        description="how slicers name this printer in a file (PrusaSlicer printer_model, Cura's machine)")


def machines_dir() -> Path:
    return Path(os.environ.get("FARMHAND_MACHINES_DIR", MACHINES_DIR))


def machine_ids(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or machines_dir()).glob("*.toml"))


def load_machine(machine: str | Path, directory: Path | None = None) -> MachineModel:
    """Load a machine model by id (``"prusa-mk3s"``) or by path to its TOML file.

    ``FARMHAND_MACHINE__JERK__X=10`` overrides a value for every machine loaded.
    """
    path = Path(machine)
    if path.suffix != ".toml":
        path = (directory or machines_dir()) / f"{machine}.toml"
        if not path.is_file():
            known = ", ".join(machine_ids(directory)) or "none"
            raise ConfigError(f"unknown machine model {str(machine)!r} (known: {known})")
    model = load(MachineModel, path, "FARMHAND_MACHINE")
    if model.id != path.stem:
        raise ConfigError(f"{path}: id {model.id!r} does not match the file name")
    return model


def match_machine(name: str | None, directory: Path | None = None) -> MachineModel | None:
    """The machine model a slicer's printer name refers to (id, name or one of its ``slicer_names``)."""
    if not name:
        return None
    wanted = name.strip().lower()
    for machine_id in machine_ids(directory):
        model = load_machine(machine_id, directory)
        if wanted in {model.id, model.name.lower(), *(n.lower() for n in model.slicer_names)}:
            return model
    return None


# For G-code from an unknown machine: Marlin's stock limits, which most files then override
# with their own M201/M203/M204/M205 lines.
GENERIC = MachineModel(
    id="generic",
    name="Generic Marlin printer",
    firmware="marlin2",
    build_volume=BuildVolume(x=220, y=220, z=250),
    max_feedrate=Axes(x=300, y=300, z=5, e=25),
    max_acceleration=Axes(x=3000, y=3000, z=100, e=10000),
    acceleration=Accelerations(print=3000, retract=3000, travel=3000),
    jerk=Axes(x=10, y=10, z=0.3, e=5),
    power=Power(idle=5, printing=100),
)
