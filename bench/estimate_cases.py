"""The models and presets ``bench.estimate`` slices: shapes a user sends, printer presets as users keep them.

Each case is one model on one preset with a few settings changed. Presets
come in two kinds: limits written into the G-code (``M201``…``M205``, our
composed profiles) and limits only declared in the slicer's configuration
block (``machine_limits_usage = time_estimate_only``, PrusaSlicer's default
for a custom printer), with values that differ from our machine model, so
an estimator that ignores the block plans with the wrong machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trimesh

T = trimesh.transformations.translation_matrix


def _cylinder(r: float, h: float, z: float = 0.0, sections: int = 64) -> trimesh.Trimesh:
    return trimesh.creation.cylinder(radius=r, height=h, sections=sections, transform=T((0, 0, z + h / 2)))


def _scene(path: Path, parts: list[trimesh.Trimesh]) -> None:
    scene = trimesh.Scene()
    for i, part in enumerate(parts):
        scene.add_geometry(part, node_name=f"part{i}", geom_name=f"part{i}")
    scene.export(path)


def _thin_box(size: float = 40.0, height: float = 30.0, wall: float = 1.2) -> trimesh.Trimesh:
    """An open-topped box: a floor and four walls that touch but do not overlap."""
    parts = [trimesh.creation.box((size, size, wall), T((0, 0, wall / 2)))]
    z = wall + (height - wall) / 2
    for sign in (-1, 1):
        parts.append(trimesh.creation.box((size, wall, height - wall), T((0, sign * (size - wall) / 2, z))))
        parts.append(trimesh.creation.box((wall, size - 2 * wall, height - wall), T((sign * (size - wall) / 2, 0, z))))
    return trimesh.util.concatenate(parts)


def _tube(path: Path) -> None:
    trimesh.creation.annulus(r_min=11, r_max=14, height=25, sections=96).export(path)


def _mushroom(path: Path) -> None:
    """A stem under a wide cap: the cap's underside hangs in the air."""
    stem, cap = _cylinder(5, 15), _cylinder(16, 4, z=15)
    _scene(path, [trimesh.util.concatenate([stem, cap])])


def _shelf(path: Path) -> None:
    """A post with an arm sticking out sideways at 12 mm: a flat overhang and a slope under it."""
    post = trimesh.creation.box((10, 10, 25), T((0, 0, 12.5)))
    arm = trimesh.creation.box((25, 10, 5), T((17.5, 0, 14.5)))
    _scene(path, [trimesh.util.concatenate([post, arm])])


def _small_parts(path: Path) -> None:
    """Nine pegs and cubes of a few mm: every infill region below 70 mm²."""
    parts = []
    for i in range(9):
        x, y = (i % 3) * 14.0, (i // 3) * 14.0
        parts.append(_cylinder(3, 8, sections=32).apply_translation((x, y, 0)) if i % 2
                     else trimesh.creation.box((7, 7, 7), T((x, y, 3.5))))
    _scene(path, parts)


def _two_objects(path: Path) -> None:
    _scene(path, [trimesh.creation.box((20, 20, 20), T((0, 0, 10))), _cylinder(10, 25).apply_translation((35, 0, 0))])


MODELS: dict[str, tuple[str, Callable[[Path], None]]] = {
    # name: (shape class, writer)
    "cube20": ("solid", lambda p: trimesh.creation.box((20, 20, 20)).export(p)),
    "cylinder": ("solid", lambda p: _cylinder(15, 30, sections=96).export(p)),
    "sphere": ("solid", lambda p: trimesh.creation.icosphere(subdivisions=4, radius=20).export(p)),
    "torus": ("solid", lambda p: trimesh.creation.torus(major_radius=20, minor_radius=7, major_sections=96,
                                                        minor_sections=48).export(p)),
    "pin": ("slender", lambda p: _cylinder(3, 40, sections=48).export(p)),
    "bar": ("slender", lambda p: trimesh.creation.box((6, 6, 45)).export(p)),
    "spire": ("slender", lambda p: trimesh.creation.cone(radius=8, height=40, sections=64).export(p)),
    "thin_box": ("hollow", lambda p: _thin_box().export(p)),
    "tube": ("hollow", _tube),
    "mushroom": ("overhang", _mushroom),
    "shelf": ("overhang", _shelf),
    "small_parts": ("small_parts", _small_parts),
    "two_objects": ("small_parts", _two_objects),
}
SUFFIX = {"mushroom": ".3mf", "shelf": ".3mf", "small_parts": ".3mf", "two_objects": ".3mf"}

# Limits a PrusaSlicer user's custom printer declares (PrusaSlicer's own defaults): unlike our machine models.
DECLARED_ONLY = {
    "machine_limits_usage": "time_estimate_only",
    "machine_max_acceleration_extruding": "1500,1250", "machine_max_acceleration_retracting": "1500,1250",
    "machine_max_acceleration_travel": "1500,1250",
    "machine_max_acceleration_x": "9000,1000", "machine_max_acceleration_y": "9000,1000",
    "machine_max_acceleration_z": "500,200", "machine_max_acceleration_e": "10000,5000",
    "machine_max_feedrate_x": "500,200", "machine_max_feedrate_y": "500,200", "machine_max_feedrate_z": "12,12",
    "machine_max_feedrate_e": "120,120",
    "machine_max_jerk_x": "10,10", "machine_max_jerk_y": "10,10", "machine_max_jerk_z": "0.2,0.4",
    "machine_max_jerk_e": "2.5,2.5",
}
# As PrusaSlicer's own defaults leave them: auto widths, small regions solid, thin walls detected.
USER_DEFAULTS = {
    "extrusion_width": "0", "perimeter_extrusion_width": "0", "external_perimeter_extrusion_width": "0",
    "infill_extrusion_width": "0", "solid_infill_extrusion_width": "0", "top_infill_extrusion_width": "0",
    "first_layer_extrusion_width": "200%", "solid_infill_below_area": "70", "thin_walls": "1",
}


@dataclass(frozen=True)
class Case:
    model: str
    machine: str = "prusa-mk3s"
    material: str = "pla"
    limits: str = "gcode"  # or "config": limits only in the configuration block
    layer_height: float = 0.2
    pattern: str = "gyroid"
    perimeters: int = 2
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        tag = "".join(f"-{k}{v}" for k, v in sorted(self.extra.items()) if k in ("support_material", "brim_width"))
        return (f"{self.model}-{self.machine}-{self.material}-{self.limits}-h{self.layer_height:g}-{self.pattern}"
                f"-p{self.perimeters}{tag}")

    def overrides(self) -> dict[str, str]:
        keys = {"layer_height": f"{self.layer_height:g}", "first_layer_height": "0.2", "fill_pattern": self.pattern,
                "perimeters": str(self.perimeters)}
        if self.limits == "config":
            keys.update(DECLARED_ONLY)
        keys.update(self.extra)
        return keys

    def classes(self) -> dict[str, str]:
        return {"shape": MODELS[self.model][0], "limits": self.limits, "layer_height": f"{self.layer_height:g}",
                "pattern": self.pattern, "perimeters": str(self.perimeters), "machine": self.machine}


SUPPORT = {"support_material": "1", "support_material_auto": "1"}

QUICK = [
    Case("cube20"),
    Case("pin", limits="config", extra=USER_DEFAULTS),
    Case("tube", machine="prusa-mk4", material="petg", layer_height=0.3, pattern="grid", perimeters=3),
    Case("mushroom", limits="config", pattern="honeycomb", extra=SUPPORT),
]

FULL = QUICK + [
    Case("cylinder", layer_height=0.1, perimeters=3),
    Case("sphere", machine="prusa-mk4", material="petg"),
    Case("sphere", limits="config", pattern="grid", extra=USER_DEFAULTS),
    Case("torus", layer_height=0.3, pattern="honeycomb", perimeters=4),
    Case("torus", machine="prusa-mk4", material="petg", limits="config"),
    Case("cube20", machine="prusa-mk4", material="petg", limits="config", layer_height=0.1, perimeters=5),
    Case("bar", pattern="grid", extra=USER_DEFAULTS),
    Case("bar", machine="prusa-mk4", material="petg", layer_height=0.3, perimeters=3),
    Case("pin", machine="prusa-mk4", material="petg", layer_height=0.15, pattern="honeycomb"),
    Case("spire", limits="config", perimeters=3, extra=USER_DEFAULTS),
    Case("thin_box", pattern="grid"),
    Case("thin_box", machine="prusa-mk4", material="petg", limits="config", layer_height=0.3, extra=USER_DEFAULTS),
    Case("tube", limits="config", layer_height=0.1, perimeters=5, extra=USER_DEFAULTS),
    Case("mushroom", machine="prusa-mk4", material="petg", layer_height=0.3, pattern="grid", extra=SUPPORT),
    Case("shelf", perimeters=3, extra=SUPPORT),
    Case("shelf", machine="prusa-mk4", material="petg", limits="config", pattern="honeycomb",
         extra={**SUPPORT, **USER_DEFAULTS}),
    Case("small_parts", limits="config", extra=USER_DEFAULTS),
    Case("small_parts", machine="prusa-mk4", material="petg", layer_height=0.1, pattern="grid", perimeters=3),
    Case("two_objects", layer_height=0.3, perimeters=4, extra={"brim_width": "5"}),
    Case("two_objects", machine="prusa-mk4", material="petg", limits="config", pattern="honeycomb",
         extra=USER_DEFAULTS),
    # A slow Bowden printer (500 mm/s²) where short gyroid segments make the planners differ most.
    Case("sphere", machine="ender3-v2", limits="config", extra=USER_DEFAULTS),
    Case("cube20", machine="ender3-v2", pattern="grid", perimeters=3),
    Case("shelf", machine="ender3-v2", limits="config", layer_height=0.3, extra=SUPPORT),
]
