"""The slicer settings a quick quote needs, read from any PrusaSlicer INI as PrusaSlicer would read them.

A profile PrusaSlicer writes leaves many values to be derived: extrusion
widths of ``0`` mean "auto" (1.125 × nozzle diameter, the nozzle diameter
for top infill and support), percentages are of the nozzle diameter (widths)
or of another speed, and a key that is absent has PrusaSlicer's default.
Reading never fails on such a file: a value that makes no sense falls back
to the slicer's default, as the slicer itself would refuse to save it.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

# PrusaSlicer's default ramming before a filament is unloaded (its ``filament_ramming_parameters``).
DEFAULT_RAMMING = "120 100 6.6 6.8 7.2 7.6 7.9 8.2 8.7 9.4 9.9 10.0|"
AUTO_WIDTH = 1.125  # × nozzle diameter: PrusaSlicer's automatic width for perimeters and infill


class QuoteSettings(BaseModel):
    """Defaults match ``hub/slicing-profiles`` quality 0.20mm on the MK3S; ``from_profile`` reads any profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    material: str = "PLA"
    density_g_cm3: float | None = Field(None, gt=0, description="overrides the material's usual density")
    max_flow_mm3_s: float | None = Field(None, gt=0, description="overrides the material's usual flow limit")
    layer_height: float = Field(0.2, gt=0)
    first_layer_height: float | None = Field(None, gt=0, description="the layer height when not given")
    line_width: float = Field(0.45, gt=0)
    first_layer_width: float | None = Field(None, gt=0, description="skirt and brim width; line_width when not given")
    perimeters: int = Field(2, ge=0)
    top_layers: int = Field(5, ge=0, description="already raised to reach the minimum shell thickness")
    bottom_layers: int = Field(4, ge=0)
    infill: float = Field(0.15, ge=0, le=1)
    infill_pattern: str = Field("gyroid", description="PrusaSlicer's fill_pattern name")
    infill_overlap: float = Field(1.1, ge=1)
    solid_infill_below_area: float = Field(0.0, ge=0, description="mm²: infill regions smaller are printed solid")
    skirt_loops: int = Field(1, ge=0)
    skirt_distance: float = Field(2.0, ge=0)
    skirt_layers: int = Field(3, ge=0)
    skirt_min_filament_mm: float = Field(4.0, ge=0)
    brim_width: float = Field(0.0, ge=0, description="mm around the first layer's outline")
    support: bool = False
    support_threshold_deg: float = Field(0.0, ge=0, le=90, description="0: the slicer's automatic threshold")
    support_spacing: float = Field(2.5, ge=0, description="mm between support lines")
    support_width: float = Field(0.4, gt=0)
    support_interface_layers: int = Field(3, ge=0)
    support_interface_spacing: float = Field(0.0, ge=0)
    support_buildplate_only: bool = False
    purge_mm3: float = Field(140.0, ge=0, description="plastic purged on the wipe tower per tool change")
    ramming_mm3: float = Field(0.0, ge=0, description="rammed into the tower before each unload (MMU printers)")
    wipe_tower_width: float = Field(60.0, gt=0)
    wipe_tower_brim: float = Field(2.0, ge=0)
    filament_diameter: float = Field(1.75, gt=0)
    perimeter_speed: float = Field(35.0, gt=0, description="mm/s, the mean of inner and outer perimeters")
    solid_speed: float = Field(70.0, gt=0)
    infill_speed: float = Field(80.0, gt=0)
    motion_efficiency: float = Field(0.6, gt=0, le=1)
    min_layer_time_s: float = Field(10.0, ge=0)
    min_print_speed: float = Field(15.0, gt=0, description="mm/s: the slowest a small layer is slowed down to")
    layer_time_overrun: float = Field(1.15, ge=1)

    @classmethod
    def from_profile(cls, path: Path | list[Path]) -> QuoteSettings:
        """Settings from PrusaSlicer INIs (later files win), one ``compose_profile`` wrote or the slicer saved."""
        keys: dict[str, str] = {}
        for p in [path] if isinstance(path, Path) else path:
            for line in p.read_text(errors="replace").splitlines():
                key, eq, value = line.partition("=")
                if eq and not key.lstrip().startswith(("#", ";")):
                    keys[key.strip()] = value.strip()
        return cls(**_ProfileReader(keys).settings())


class _ProfileReader:
    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys

    def raw(self, key: str) -> str:
        return self.keys.get(key, "").split(",")[0].split(";")[0].strip().strip('"')

    def num(self, key: str, default: float, of: float | None = None, positive: bool = True) -> float:
        """A number, a percentage of ``of`` (of 1 when none: ``15%`` → 0.15), else ``default``."""
        raw = self.raw(key)
        try:
            value = float(raw[:-1]) / 100 * (of if of is not None else 1.0) if raw.endswith("%") else float(raw)
        except ValueError:
            return default
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            return default
        return value

    def width(self, key: str, nozzle: float, auto: float) -> float:
        """An extrusion width: ``0`` falls back to ``extrusion_width``, then to the automatic width."""
        general = self.num("extrusion_width", auto, of=nozzle)
        return self.num(key, general, of=nozzle)

    def settings(self) -> dict[str, object]:
        num = self.num
        nozzle = num("nozzle_diameter", 0.4)
        auto = AUTO_WIDTH * nozzle
        h = num("layer_height", 0.2)
        first_h = num("first_layer_height", h, of=h)
        width = self.width("perimeter_extrusion_width", nozzle, auto)
        # Unlike the other widths, a first-layer width in percent is of the first layer's height.
        first_width = self.num("first_layer_extrusion_width", 0.0, of=first_h) or width
        perimeter = num("perimeter_speed", 60.0)
        outer = num("external_perimeter_speed", perimeter, of=perimeter)
        infill_speed = num("infill_speed", 80.0)
        solid = num("solid_infill_speed", 20.0, of=infill_speed)
        top_layers = max(int(num("top_solid_layers", 3, positive=False)),
                         math.ceil(num("top_solid_min_thickness", 0, positive=False) / h - 1e-9))
        bottom_layers = max(int(num("bottom_solid_layers", 3, positive=False)),
                            math.ceil(num("bottom_solid_min_thickness", 0, positive=False) / h - 1e-9))
        interface = int(num("support_material_interface_layers", 3, positive=False))
        return {
            "material": self.raw("filament_type") or "PLA",
            "density_g_cm3": num("filament_density", 0.0) or None,
            "max_flow_mm3_s": num("filament_max_volumetric_speed", 0.0) or None,
            "layer_height": h, "first_layer_height": first_h, "line_width": width, "first_layer_width": first_width,
            "perimeters": int(num("perimeters", 3, positive=False)),
            "top_layers": top_layers, "bottom_layers": bottom_layers,
            "infill": min(num("fill_density", 0.2, positive=False), 1.0),
            "infill_pattern": self.raw("fill_pattern") or "stars",
            "solid_infill_below_area": num("solid_infill_below_area", 70.0, positive=False),
            "skirt_loops": int(num("skirts", 1, positive=False)), "skirt_distance": num("skirt_distance", 6.0),
            "skirt_layers": int(num("skirt_height", 1, positive=False)),
            "skirt_min_filament_mm": num("min_skirt_length", 0.0, positive=False),
            "brim_width": num("brim_width", 0.0, positive=False) if self.raw("brim_type") != "no_brim" else 0.0,
            "support": self.raw("support_material") == "1",
            "support_threshold_deg": min(num("support_material_threshold", 0.0, positive=False), 90.0),
            "support_spacing": num("support_material_spacing", 2.5, positive=False),
            "support_width": self.num("support_material_extrusion_width",
                                      num("extrusion_width", nozzle, of=nozzle), of=nozzle),
            "support_interface_layers": max(interface, 0),
            "support_interface_spacing": num("support_material_interface_spacing", 0.0, positive=False),
            "support_buildplate_only": self.raw("support_material_buildplate_only") == "1",
            "purge_mm3": _purge(self.keys.get("wiping_volumes_matrix", "")),
            "ramming_mm3": _ramming(self.keys.get("filament_ramming_parameters", DEFAULT_RAMMING))
            if self.raw("single_extruder_multi_material") == "1" else 0.0,
            "wipe_tower_width": num("wipe_tower_width", 60.0),
            "wipe_tower_brim": num("wipe_tower_brim_width", 2.0, positive=False),
            "filament_diameter": num("filament_diameter", 1.75),
            "perimeter_speed": (perimeter + outer) / 2, "solid_speed": solid, "infill_speed": infill_speed,
            "min_layer_time_s": num("slowdown_below_layer_time", 5.0, positive=False)
            if self.raw("cooling") != "0" else 0.0,
            "min_print_speed": num("min_print_speed", 10.0),
        }


def _purge(matrix: str) -> float:
    """Mean purge between two different filaments from ``wiping_volumes_matrix`` (PrusaSlicer's default 140)."""
    try:
        values = [float(v) for v in matrix.split(",") if v.strip()]
    except ValueError:
        return 140.0
    n = math.isqrt(len(values))
    if n < 2 or n * n != len(values):
        return 140.0
    off = [values[i * n + j] for i in range(n) for j in range(n) if i != j]
    mean = sum(off) / len(off)
    return mean if math.isfinite(mean) and mean >= 0 else 140.0


def _ramming(parameters: str) -> float:
    """Volume of PrusaSlicer's ramming: after two header numbers, flow rates (mm³/s) at 0.25 s steps, up to "|"."""
    try:
        rates = [float(v) for v in parameters.strip().strip('"').split("|")[0].split()[2:]]
    except ValueError:
        return 0.0
    volume = sum(r for r in rates if math.isfinite(r) and r > 0) * 0.25
    return volume if math.isfinite(volume) else 0.0
