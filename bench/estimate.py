"""How close our print-time estimate and quick-quote grams come to PrusaSlicer's own numbers.

    python -m bench.estimate            # every model at two machine/material profiles
    python -m bench.estimate --quick    # three models, one profile: under a minute on 2 cores

Models are generated with trimesh, sliced with the PrusaSlicer command line,
then the G-code is analysed by ``hub.analysis``. The time compared is our
``moves_s`` against PrusaSlicer's "estimated printing time (normal mode)":
both model motion only (PrusaSlicer adds nothing for heating, homing,
probing or G4 dwells; our ``total_s`` does). Grams compare ``quick_quote``
(from the mesh alone) against PrusaSlicer's "total filament used [g]".
The last line printed is one JSON object with the summary and the raw numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trimesh

from hub.analysis.machines import load_machine
from hub.analysis.quick_quote import QuoteSettings, quick_quote_file
from hub.slicing.slicer import compose_profile, slice_mesh
from protocol.logs import configure

PROFILES = [("prusa-mk3s", "pla"), ("prusa-mk4", "petg")]
QUICK_MODELS = ("cube20", "sphere", "two_objects")


def _thin_box(size: float = 40.0, height: float = 30.0, wall: float = 1.2) -> trimesh.Trimesh:
    """An open-topped box: a floor and four walls that touch but do not overlap."""
    parts = [trimesh.creation.box((size, size, wall), trimesh.transformations.translation_matrix((0, 0, wall / 2)))]
    z = wall + (height - wall) / 2
    for sign in (-1, 1):
        parts.append(trimesh.creation.box(
            (size, wall, height - wall),
            trimesh.transformations.translation_matrix((0, sign * (size - wall) / 2, z))))
        parts.append(trimesh.creation.box(
            (wall, size - 2 * wall, height - wall),
            trimesh.transformations.translation_matrix((sign * (size - wall) / 2, 0, z))))
    return trimesh.util.concatenate(parts)


def _two_objects(path: Path) -> None:
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box((20, 20, 20)), node_name="cube", geom_name="cube")
    scene.add_geometry(trimesh.creation.cylinder(radius=10, height=25, sections=64), node_name="cylinder",
                       geom_name="cylinder", transform=trimesh.transformations.translation_matrix((35, 0, 2.5)))
    scene.export(path)


MODELS: dict[str, Callable[[Path], None]] = {
    "cube20": lambda p: trimesh.creation.box((20, 20, 20)).export(p),
    "cube40": lambda p: trimesh.creation.box((40, 40, 40)).export(p),
    "cylinder": lambda p: trimesh.creation.cylinder(radius=15, height=30, sections=96).export(p),
    "sphere": lambda p: trimesh.creation.icosphere(subdivisions=4, radius=20).export(p),
    "thin_box": lambda p: _thin_box().export(p),
    "torus": lambda p: trimesh.creation.torus(major_radius=20, minor_radius=7, major_sections=96,
                                               minor_sections=48).export(p),
    "two_objects": _two_objects,
}
SUFFIX = {"two_objects": ".3mf"}


def _pct(ours: float, theirs: float) -> float:
    return (ours / theirs - 1.0) * 100.0


async def _run(quick: bool, workdir: Path) -> dict[str, object]:
    names = QUICK_MODELS if quick else tuple(MODELS)
    profiles = PROFILES[:1] if quick else PROFILES
    rows = []
    for machine_id, material in profiles:
        machine = load_machine(machine_id)
        ini = compose_profile(machine, material, out_dir=workdir / "profiles")
        quote_settings = QuoteSettings.from_profile(ini)
        for name in names:
            mesh = workdir / f"{name}{SUFFIX.get(name, '.stl')}"
            if not mesh.exists():
                MODELS[name](mesh)
            started = time.perf_counter()
            result = await slice_mesh(mesh, ini, workdir / f"{name}_{machine_id}_{material}.gcode", timeout_s=300,
                                      machine=machine)
            wall_s = time.perf_counter() - started
            a = result.analysis
            theirs_s = a.metadata.estimated_time_s
            theirs_g = a.metadata.total_filament_g
            if theirs_s is None or theirs_g is None:
                raise RuntimeError(f"{result.gcode}: PrusaSlicer wrote no time or grams")
            quote = quick_quote_file(mesh, quote_settings)
            row = {
                "model": name, "machine": machine_id, "material": material,
                "prusaslicer_s": theirs_s, "ours_moves_s": round(a.estimate.moves_s, 1),
                "ours_total_s": round(a.estimate.total_s, 1), "time_err_pct": round(_pct(a.estimate.moves_s, theirs_s), 3),
                "prusaslicer_g": theirs_g, "quick_quote_g": round(quote.grams, 2),
                "grams_err_pct": round(_pct(quote.grams, theirs_g), 2),
                "quick_quote_time_s": round(quote.time_s), "quick_quote_time_err_pct": round(_pct(quote.time_s, theirs_s), 1),
                "gcode_lines": a.lines, "slice_and_analyse_s": round(wall_s, 2),
            }
            rows.append(row)
            print(f"{name:12s} {machine_id:11s} {material:4s}  time {theirs_s:7.0f}s ours {a.estimate.moves_s:7.0f}s "
                  f"({row['time_err_pct']:+.2f}%)  grams {theirs_g:6.2f} quote {quote.grams:6.2f} "
                  f"({row['grams_err_pct']:+.1f}%)  [{wall_s:.1f}s]", flush=True)
    time_errs = np.abs([r["time_err_pct"] for r in rows])
    gram_errs = np.abs([r["grams_err_pct"] for r in rows])
    return {
        "time_err_pct_max": round(float(time_errs.max()), 3),
        "time_err_pct_mean": round(float(time_errs.mean()), 3),
        "quick_quote_grams_err_pct_max": round(float(gram_errs.max()), 2),
        "quick_quote_grams_err_pct_mean": round(float(gram_errs.mean()), 2),
        "goals": {"time_err_pct_max": 3.0, "quick_quote_grams_err_pct_max": 15.0},
        "quick": quick,
        "models": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.estimate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="three models, one profile")
    parser.add_argument("--keep", type=Path, help="slice into this directory and keep the files")
    args = parser.parse_args(argv)
    configure(level="warning")
    started = time.perf_counter()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        summary = asyncio.run(_run(args.quick, args.keep))
    else:
        with tempfile.TemporaryDirectory(prefix="farmhand-bench-") as tmp:
            summary = asyncio.run(_run(args.quick, Path(tmp)))
    summary["bench_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))
    ok = summary["time_err_pct_max"] <= 3.0 and summary["quick_quote_grams_err_pct_max"] <= 15.0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
