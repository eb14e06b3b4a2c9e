"""How close our print-time estimate and quick-quote grams come to PrusaSlicer's own numbers.

    python -m bench.estimate            # every case in bench/estimate_cases.py (FULL)
    python -m bench.estimate --quick    # four cases: under a minute on 2 cores, slices cached

Models are generated with trimesh and sliced with the PrusaSlicer command
line on presets of two kinds (limits in the G-code, limits only in the
configuration block); the G-code is analysed by ``hub.analysis`` with the
machine model the hub would pass. The time compared is our ``moves_s``
against PrusaSlicer's "estimated printing time (normal mode)": both model
motion only. Grams compare ``quick_quote`` (from the mesh alone, with the
same profile) against PrusaSlicer's "total filament used [g]".

Sliced G-code is kept in ``.cache/bench`` under a key of the case, its
profile, the case definitions and the slicer binary, so a second run only
analyses. The summary gives the worst and mean error per class (shape,
limits, layer height, infill pattern, perimeters, machine); the last line
printed is one JSON object with the summary and the raw numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import estimate_cases
from bench.estimate_cases import FULL, MODELS, QUICK, SUFFIX, Case
from hub.analysis.gcode import analyze_gcode
from hub.analysis.machines import load_machine
from hub.analysis.motion import estimate_time
from hub.analysis.quick_quote import QuoteSettings, quick_quote_file
from hub.slicing.slicer import compose_profile
from protocol.logs import configure

SLICE_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "bench"
GOALS = {"time_err_pct_max": 3.0, "time_err_pct_mean": 1.5, "quick_quote_grams_err_pct_max": 10.0}


def _pct(ours: float, theirs: float) -> float:
    return (ours / theirs - 1.0) * 100.0


def _profile(case: Case, work: Path) -> Path:
    """The composed preset with the case's changes, as one INI both the slicer and the quote read."""
    base = compose_profile(load_machine(case.machine), case.material, out_dir=work / "profiles")
    keys: dict[str, str] = {}
    for line in base.read_text().splitlines():
        key, eq, value = line.partition("=")
        if eq and not key.startswith("#"):
            keys[key.strip()] = value.strip()
    keys.update(case.overrides())
    out = work / "profiles" / f"{case.name}.ini"
    out.write_text("".join(f"{k} = {v}\n" for k, v in keys.items()))
    return out


def _slice(case: Case, mesh: Path, ini: Path) -> Path:
    slicer = os.path.realpath(shutil.which("prusa-slicer") or "prusa-slicer")
    key = hashlib.sha256(ini.read_bytes())
    key.update(Path(estimate_cases.__file__).read_bytes())
    key.update(repr((case.name, slicer, os.stat(slicer).st_mtime_ns if os.path.exists(slicer) else 0)).encode())
    cached = SLICE_CACHE / f"estimate-{case.model}-{key.hexdigest()[:16]}.gcode"
    if not cached.exists():
        SLICE_CACHE.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial")
        done = subprocess.run([slicer, "--export-gcode", "--loglevel", "1", "--load", str(ini),
                               "--output", str(partial), str(mesh)], capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not partial.exists():
            raise RuntimeError(f"PrusaSlicer failed on {case.name}: {done.stderr[-2000:]}")
        partial.replace(cached)
    return cached


def _case(case: Case, work: Path) -> dict[str, object]:
    mesh = work / f"{case.model}{SUFFIX.get(case.model, '.stl')}"
    if not mesh.exists():
        MODELS[case.model][1](mesh)
    ini = _profile(case, work)
    started = time.perf_counter()
    gcode = _slice(case, mesh, ini)
    sliced_s = time.perf_counter() - started
    a = analyze_gcode(gcode, load_machine(case.machine))
    theirs_s, theirs_g = a.metadata.estimated_time_s, a.metadata.total_filament_g
    if theirs_s is None or theirs_g is None:
        raise RuntimeError(f"{gcode}: PrusaSlicer wrote no time or grams")
    # The same file planned with the machine model alone, as before the config block was read.
    with gcode.open() as f:
        machine_only = estimate_time(f, load_machine(case.machine)).moves_s
    quote = quick_quote_file(mesh, QuoteSettings.from_profile(ini))
    limits = a.estimate.limits
    row = {
        "case": case.name, **case.classes(), "prusaslicer_s": theirs_s, "ours_moves_s": round(a.estimate.moves_s, 1),
        "time_err_pct": round(_pct(a.estimate.moves_s, theirs_s), 3),
        "limits_used": limits.source if limits else None,
        "time_err_pct_machine_only": round(_pct(machine_only, theirs_s), 3),
        "m73_max_gap_pct": a.estimate.progress.max_gap_pct if a.estimate.progress else None,
        "prusaslicer_g": theirs_g, "quick_quote_g": round(quote.grams, 2),
        "grams_err_pct": round(_pct(quote.grams, theirs_g), 2),
        "quick_quote_time_err_pct": round(_pct(quote.time_s, theirs_s), 1),
        "gcode_lines": a.lines, "slice_s": round(sliced_s, 2), "analyse_s": round(time.perf_counter() - started - sliced_s, 2),
    }
    print(f"{case.name:62s} time {theirs_s:6.0f}s {row['time_err_pct']:+6.2f}% "
          f"(machine only {row['time_err_pct_machine_only']:+6.2f}%)  "
          f"grams {theirs_g:6.2f} {row['grams_err_pct']:+6.1f}%", flush=True)
    return row


def _by_class(rows: list[dict[str, object]]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for dimension in rows[0]["classes"]:  # type: ignore[index]
        groups: dict[str, list[dict[str, object]]] = {}
        for r in rows:
            groups.setdefault(str(r[dimension]), []).append(r)
        out[dimension] = {
            value: {
                "n": len(members),
                "time_err_pct_max": round(float(np.max(np.abs([m["time_err_pct"] for m in members]))), 2),
                "time_err_pct_mean": round(float(np.mean(np.abs([m["time_err_pct"] for m in members]))), 2),
                "grams_err_pct_max": round(float(np.max(np.abs([m["grams_err_pct"] for m in members]))), 1),
                "grams_err_pct_mean": round(float(np.mean(np.abs([m["grams_err_pct"] for m in members]))), 1),
            }
            for value, members in sorted(groups.items())
        }
    return out


def run(quick: bool, work: Path) -> dict[str, object]:
    cases = QUICK if quick else FULL
    rows = []
    for case in cases:
        row = _case(case, work)
        row["classes"] = list(case.classes())
        rows.append(row)
    time_errs = np.abs([r["time_err_pct"] for r in rows])
    gram_errs = np.abs([r["grams_err_pct"] for r in rows])
    by_class = _by_class(rows)
    for r in rows:
        del r["classes"]
    for dimension, groups in by_class.items():
        for value, s in groups.items():
            print(f"  {dimension:12s} {value:12s} n={s['n']:2d}  time worst {s['time_err_pct_max']:5.2f}% "
                  f"mean {s['time_err_pct_mean']:5.2f}%  grams worst {s['grams_err_pct_max']:5.1f}% "
                  f"mean {s['grams_err_pct_mean']:5.1f}%", flush=True)
    return {
        "time_err_pct_max": round(float(time_errs.max()), 3),
        "time_err_pct_mean": round(float(time_errs.mean()), 3),
        "time_err_pct_max_machine_only": round(float(np.max(np.abs([r["time_err_pct_machine_only"] for r in rows]))), 3),
        "quick_quote_grams_err_pct_max": round(float(gram_errs.max()), 2),
        "quick_quote_grams_err_pct_mean": round(float(gram_errs.mean()), 2),
        "quick_quote_time_err_pct_median": round(float(np.median(np.abs([r["quick_quote_time_err_pct"] for r in rows]))), 1),
        "goals": GOALS, "quick": quick, "cases": len(rows), "by_class": by_class, "models": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.estimate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="four cases")
    parser.add_argument("--keep", type=Path, help="write models and profiles into this directory and keep them")
    args = parser.parse_args(argv)
    configure(level="warning")
    started = time.perf_counter()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        summary = run(args.quick, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="farmhand-bench-") as tmp:
            summary = run(args.quick, Path(tmp))
    summary["bench_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))
    ok = all(summary[k] <= v for k, v in GOALS.items())  # type: ignore[operator]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
