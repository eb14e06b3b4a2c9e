"""How close the serial driver keeps a printer's wire to full, what it costs the agent, and whether every line ran once.

    python -m bench.serial_stream [--quick] [--max-lines N] [--keep DIR]

Files: (a) 100,000 short segments (a spiral of 0.3 mm moves, the kind of file
that starves a planner) and (b) a file sliced by PrusaSlicer from a finely
tessellated wavy cylinder made with trimesh. Each case streams them to virtual
printers (``farmhand sim printer``, one process each) that clock every byte at
10 bits per baud, from one driver process (``farmhand.print_cmd.print_files``,
the agent's own device code) whose CPU time and peak RSS are the agent's. The
driver runs from an agent-only install (``pip install farmhand[agent]``, made
once in ``.venv-agent``), so its memory is what a Raspberry Pi would see, not
what the development tools installed beside it add.

Per case: lines/s per printer; % of the wire limit = framed bytes actually sent
(resends included) / (wall seconds x baud / 10); agent CPU seconds per 10,000
lines; agent peak RSS; resends; exactly-once (every job line ran once, in order,
by the printer's own record). Then two references measured in the same run
(``bench.serial_reference``): the CPU a do-nothing reader thread pays per
wake-up, and the engine's own work per line back to back and two lines per
wake-up (on a virtual machine, work that follows a sleep costs several times more). Then the real Klippy's
pty (``bench.serial_klippy``): lines/s of the driver against a one-line-in-flight
sender, same file, same run. Then how fast a firmware kill, thermal runaway and
reset fail the job in the firmware's words. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from bench.serial_klippy import klippy_case
from bench.serial_reference import measure_engine_cost, measure_wake_floor
from tests.klippykit import available as klippy_available

FINISH = ["M400"]
HOST_QUERIES = ("M105", "M115", "M155", "M27")
SIM_SPEED = "100000"  # moves and heating take no time: the wire is the only limit
SLICE_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "bench"


@dataclass(frozen=True)
class Case:
    file: str
    baud: int
    advanced_ok: bool
    printers: int = 1
    noise: float = 0.0

    @property
    def name(self) -> str:
        ok = "adv" if self.advanced_ok else "plain"
        return f"{self.file}/{self.baud}/{ok}/x{self.printers}/noise{self.noise:g}"


def full_cases() -> list[Case]:
    cases = []
    for file in ("segments", "sliced"):
        for baud in (115200, 250000):
            for adv in (True, False):
                cases.append(Case(file, baud, adv))
        for adv in (True, False):
            cases.append(Case(file, 250000, adv, printers=4))
        cases.append(Case(file, 250000, True, noise=0.01))
        cases.append(Case(file, 250000, False, noise=0.01))
    cases.append(Case("segments", 250000, True, printers=4, noise=0.01))
    return cases


def quick_cases() -> list[Case]:
    return [Case("segments", 250000, True), Case("segments", 250000, False),
            Case("segments", 250000, True, printers=4), Case("sliced", 250000, True, noise=0.01)]


# ----------------------------------------------------------------------------- the files


def short_segments(path: Path, lines: int) -> None:
    """A spiral of 0.3 mm extruding moves with a slicer's header and M73 progress, ``lines`` commands in all."""
    out = ["; Farmhand benchmark: short segments", "M73 P0 R60", "M140 S60", "M104 S215", "G28", "M190 S60",
           "M109 S215", "G90", "M83", "G92 E0", "G1 Z0.2 F720"]
    radius, angle, step = 5.0, 0.0, 0.3
    count = len(out)
    while count < lines - 1:
        angle += step / radius
        radius += 0.0004
        x, y = 100 + radius * math.cos(angle), 100 + radius * math.sin(angle)
        out.append(f"G1 X{x:.3f} Y{y:.3f} E{step * 0.0333:.5f}")
        count += 1
        if count % (lines // 100) == 0:
            out.append(f"M73 P{count * 100 // lines}")
            count += 1
    out.append("M104 S0")
    path.write_text("\n".join(out[:lines]) + "\n")


def sliced(path: Path, work: Path) -> None:
    """PrusaSlicer's G-code for a wavy cylinder of 1440 facets around: many short perimeter segments.

    Slicing takes several seconds, so the G-code is kept in ``.cache/bench`` under a key
    of the model, the options and the slicer binary, and sliced again when one changes.
    """
    import hashlib

    import numpy as np
    import trimesh

    mesh = trimesh.creation.cylinder(radius=25.0, height=16.0, sections=1440)
    v = mesh.vertices.copy()
    theta, r = np.arctan2(v[:, 1], v[:, 0]), np.hypot(v[:, 0], v[:, 1])
    scale = np.where(r > 1e-6, (25.0 + 2.0 * np.sin(48 * theta)) / np.maximum(r, 1e-9), 1.0)
    v[:, 0] *= scale
    v[:, 1] *= scale
    v[:, 2] += 8.0
    mesh.vertices = v
    stl = work / "wavy.stl"
    mesh.export(stl)
    slicer = os.path.realpath(shutil.which("prusa-slicer") or "prusa-slicer")
    options = ["--layer-height", "0.2", "--perimeters", "2", "--fill-density", "10%"]
    key = hashlib.sha256(stl.read_bytes())
    key.update(repr((options, slicer, os.stat(slicer).st_mtime_ns if os.path.exists(slicer) else 0)).encode())
    cached = SLICE_CACHE / f"wavy-{key.hexdigest()[:16]}.gcode"
    if not cached.exists():
        SLICE_CACHE.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial")
        subprocess.run([slicer, "--export-gcode", "--output", str(partial), *options, str(stl)],
                       check=True, capture_output=True)
        partial.replace(cached)
    shutil.copyfile(cached, path)


def truncated(path: Path, max_lines: int | None) -> Path:
    if not max_lines:
        return path
    out = path.with_name(f"{path.stem}-{max_lines}.gcode")
    with open(path) as src, open(out, "w") as dst:
        kept = 0
        for line in src:
            dst.write(line)
            kept += bool(line.split(";", 1)[0].strip())
            if kept >= max_lines:
                break
    return out


# ----------------------------------------------------------------------------- one case


def commands_of(path: Path) -> list[str]:
    from agent.serial.gcode import prepare_file

    return [c.decode("utf-8", "surrogateescape") for c in prepare_file(path).commands]


def exactly_once(record: Path, expected: list[str]) -> bool:
    """The printer's record after the job's sync: numbered 1, 2, 3… without a gap or a repeat, the job's lines."""
    with open(record, encoding="latin-1") as f:
        f.readline()  # stats
        rows = [line.rstrip("\n").split("\t", 1) for line in f]
    start = max(i for i, (n, c) in enumerate(rows) if n == "0" and c == "M110 N0")
    numbered = [(int(n), c) for n, c in rows[start:] if n != "-"]
    if [n for n, _ in numbered] != list(range(len(numbered))):
        return False
    return [c for _, c in numbered[1:] if not c.startswith(HOST_QUERIES)] == [*expected, *FINISH]


AGENT_VENV = Path(__file__).resolve().parent.parent / ".venv-agent"


def agent_python() -> str:
    """The interpreter of an agent-only install of this checkout, made on first use and made again when
    pyproject.toml changes (the agent's dependencies may have)."""
    python = AGENT_VENV / "bin" / "python"
    project = AGENT_VENV.parent / "pyproject.toml"
    stamp = AGENT_VENV / f".installed-{zlib.crc32(project.read_bytes()):08x}"
    if not stamp.exists():
        print(f"making an agent-only install in {AGENT_VENV}", flush=True)
        shutil.rmtree(AGENT_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(AGENT_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", f"{AGENT_VENV.parent}[agent]"],
                       check=True, stdout=subprocess.DEVNULL)
        stamp.touch()
    return str(python)


def printer_files(case: Case, work: Path) -> tuple[list[Path], list[Path]]:
    """Each printer's link and its record of what it ran: one of each per printer, never shared."""
    stems = [f"{case.name.replace('/', '_')}-p{i}" for i in range(case.printers)]
    # Not link.with_suffix(".record"): "noise0.01-p0" would lose ".01-p0", and a case's printers share one record.
    return [work / stem for stem in stems], [work / f"{stem}.record" for stem in stems]


def run_case(case: Case, path: Path, work: Path, driver_python: str) -> dict[str, object]:
    links, records = printer_files(case, work)
    sims = []
    for i, link in enumerate(links):
        sims.append(subprocess.Popen(
            [sys.executable, "-m", "farmhand.cli", "--log-level", "warning", "sim", "printer", "--link", str(link),
             "--baud", str(case.baud), "--speed", SIM_SPEED, "--noise", str(case.noise), "--seed", str(i + 1),
             "--advanced-ok" if case.advanced_ok else "--no-advanced-ok", "--record", str(records[i])],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
    try:
        for sim in sims:
            assert sim.stdout is not None and b"serving on" in sim.stdout.readline()
        driver = subprocess.run(
            [driver_python, "-m", "bench.serial_stream", "--driver", "--baud", str(case.baud),
             *(f"{link}={path}" for link in links)],
            capture_output=True, text=True, check=False, cwd=AGENT_VENV.parent)
        if driver.returncode != 0:
            raise RuntimeError(f"the driver failed: {driver.stderr[-2000:]}")
        measured = json.loads(driver.stdout.strip().splitlines()[-1])
    finally:
        for sim in sims:
            sim.terminate()
        for sim in sims:
            sim.wait(30)
    expected = commands_of(path)
    prints = measured["prints"]
    wire = [p["bytes_sent"] / (p["seconds"] * case.baud / 10) * 100 for p in prints]
    lines = sum(p["lines"] for p in prints)
    return {
        "case": case.name,
        "lines_per_printer": prints[0]["lines"],
        "lines_per_s": [round(p["lines"] / p["seconds"], 1) for p in prints],
        "wire_pct": [round(w, 1) for w in wire],
        "cpu_s_per_10k_lines": round(measured["cpu_s"] / lines * 10_000, 3),
        "rss_mb": round(measured["rss_mb"], 1),
        "resends": [p["resends"] for p in prints],
        "all_completed": all(p["ok"] for p in prints),
        "exactly_once": all(p["ok"] for p in prints) and all(exactly_once(r, expected) for r in records),
    }


def peak_rss_mb() -> float:
    """This process's peak resident memory. Not ru_maxrss: Linux carries that over exec from the parent's fork."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def drive(targets: list[str], baud: int, profile: str = "marlin2", pacing: str = "wire") -> None:
    """The agent's side of a case: stream each file to its printer from this process; report CPU and RSS."""
    from agent.loop import run
    from farmhand.print_cmd import print_files
    from protocol import logs

    logs.configure("warning")
    pairs = [(t.split("=", 1)[0], Path(t.split("=", 1)[1])) for t in targets]
    before = resource.getrusage(resource.RUSAGE_SELF)
    # The virtual printers clock every byte at the baud rate: a UART's pace, though over a pty.
    results = run(print_files(pairs, baud=baud, profile=profile, pacing=pacing))  # type: ignore[arg-type]
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    prints = [{"ok": r.ok, "lines": r.lines, "seconds": r.seconds, "bytes_sent": r.bytes_sent,
               "resends": r.resends, "reason": r.reason} for r in results]
    print(json.dumps({"prints": prints, "cpu_s": cpu, "rss_mb": peak_rss_mb()}))


# ----------------------------------------------------------------------------- faults


async def fault_latency(work: Path) -> dict[str, dict[str, object]]:
    """Seconds from a fault on the printer to the job failing in the firmware's words."""
    from agent.devices.serial_gcode import SerialGcodeDevice
    from farmhand.sim.printer import VirtualPrinter
    from protocol.messages import DeviceState, JobFailed

    class Failures:
        def __init__(self) -> None:
            self.failed: JobFailed | None = None

        def event(self, body: object) -> None:
            if isinstance(body, JobFailed):
                self.failed = body

        def status(self, status: object) -> None:
            pass

        def telemetry(self, telemetry: object) -> None:
            pass

    job = work / "fault.gcode"
    job.write_text("".join(f"G1 X{10 * (i % 2)} Y0 F6000\n" for i in range(20_000)))
    out: dict[str, dict[str, object]] = {}
    for fault in ("kill", "thermal_runaway", "reset"):
        printer = VirtualPrinter(work / f"fault-{fault}", speed_factor=50.0, baud=250000)
        await printer.start()
        seen = Failures()
        device = SerialGcodeDevice("bench", seen, port=str(printer.link), baud=250000, poll_interval_s=2.0)
        await device.open()
        try:
            while device.state is not DeviceState.IDLE:
                await asyncio.sleep(0.01)
            await device.start_job("fault", job)
            while device.engine.lines_done < 200:
                await asyncio.sleep(0.01)
            t0 = time.monotonic()
            {"kill": printer.inject_kill, "thermal_runaway": printer.inject_thermal_runaway,
             "reset": printer.inject_reset}[fault]()
            while seen.failed is None:
                await asyncio.sleep(0.001)
            out[fault] = {"seconds": round(time.monotonic() - t0, 3), "reason": seen.failed.reason}
        finally:
            await device.close()
            await printer.stop()
    return out


# ----------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few cases on shorter files: under a minute")
    p.add_argument("--max-lines", type=int, default=None,
                   help="stream only the first N commands of each file (default 100,000; 4,000 with --quick)")
    p.add_argument("--keep", type=Path, default=None, help="keep the files and printer records in DIR")
    p.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--baud", type=int, default=250000, help=argparse.SUPPRESS)
    p.add_argument("--profile", default="marlin2", help=argparse.SUPPRESS)
    p.add_argument("--pacing", default="wire", help=argparse.SUPPRESS)
    p.add_argument("--same-python", action="store_true",
                   help="run the driver with this interpreter, not an agent-only install")
    p.add_argument("targets", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.driver:
        drive(args.targets, args.baud, args.profile, args.pacing)
        return
    from protocol import logs

    logs.configure("error")  # the faults below are meant to happen: their warnings are not news
    driver_python = sys.executable if args.same_python else agent_python()
    # PrusaSlicer's file for the wavy cylinder runs to several hundred thousand lines: its first 100,000 do.
    max_lines = args.max_lines or (4000 if args.quick else 100_000)
    cases = quick_cases() if args.quick else full_cases()
    with tempfile.TemporaryDirectory(prefix="farmhand-serial-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        files = {"segments": work / "segments.gcode", "sliced": work / "sliced.gcode"}
        short_segments(files["segments"], 100_000)
        sliced(files["sliced"], work)
        files = {k: truncated(v, max_lines) for k, v in files.items()}
        counts = {k: len(commands_of(v)) for k, v in files.items()}
        print(f"files: {counts} commands; sim speed x{SIM_SPEED}; host {os.cpu_count()} cores", flush=True)
        print(f"{'case':42} {'lines/s':>16} {'wire %':>18} {'cpu s/10k':>9} {'rss MB':>6} {'resends':>14} once",
              flush=True)
        results = []
        for case in cases:
            row = run_case(case, files[case.file], work, driver_python)
            results.append(row)
            print(f"{row['case']:42} {'/'.join(f'{x:.0f}' for x in row['lines_per_s']):>16} "
                  f"{'/'.join(f'{x:.1f}' for x in row['wire_pct']):>18} {row['cpu_s_per_10k_lines']:>9.3f} "
                  f"{row['rss_mb']:>6.1f} {'/'.join(str(x) for x in row['resends']):>14} {row['exactly_once']}",
                  flush=True)
        floor_us = measure_wake_floor(driver_python, 1000 if args.quick else 10_000, 250000)
        print(f"wake-up floor: {floor_us:.0f} us CPU per answer woken for (a do-nothing reader thread at "
              f"250000 baud's line rate); at one wake-up per line that is {floor_us / 100:.2f} s per 10,000 lines",
              flush=True)
        engine = measure_engine_cost(driver_python, files["segments"], 1000 if args.quick else 6000, 250000)
        print(f"engine work: {engine['tight_us']:.1f} us per line back to back, {engine['woken_us']:.1f} us done two "
              "lines per wake-up, the sleep itself included (what this machine adds to work that follows a sleep)",
              flush=True)
        klippy = klippy_case(work, 6000 if args.quick else 30_000, driver_python) if klippy_available() else None
        if klippy is None:
            print("klippy: not installed (scripts/peers/klippy.sh); case skipped", flush=True)
        else:
            print(f"klippy pty, {klippy['lines']} lines: lines/s {klippy['lines_per_s']}, "
                  f"{klippy['vs_one_in_flight']}x one line in flight; exactly once {klippy['exactly_once']}", flush=True)
        logs.configure("critical")  # the faults are meant to happen: the firmware's words are printed below
        from agent import loop as agent_loop

        faults = agent_loop.run(fault_latency(work))
        for fault, seen in faults.items():
            print(f"fault {fault}: job failed after {seen['seconds']} s: {seen['reason']}", flush=True)
    summary = {
        "files": counts,
        "wire_pct": {r["case"]: r["wire_pct"] for r in results},
        "lines_per_s": {r["case"]: r["lines_per_s"] for r in results},
        "cpu_s_per_10k_lines": {r["case"]: r["cpu_s_per_10k_lines"] for r in results},
        "rss_mb": {r["case"]: r["rss_mb"] for r in results},
        "resends": {r["case"]: r["resends"] for r in results},
        "exactly_once": all(r["exactly_once"] and r["all_completed"] for r in results),
        "rss_mb_max": max(r["rss_mb"] for r in results),
        "cpu_s_per_10k_lines_max": max(r["cpu_s_per_10k_lines"] for r in results),
        "wake_floor_us": round(floor_us, 1),
        "wake_floor_s_per_10k_lines": round(floor_us / 100, 3),
        "engine_us_per_line_back_to_back": round(engine["tight_us"], 1),
        "engine_us_per_line_two_per_wakeup": round(engine["woken_us"], 1),
        "driver": "agent-only install" if driver_python != sys.executable else "this interpreter",
        "fault_to_failed_s": {k: v["seconds"] for k, v in faults.items()},
        "klippy": klippy,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
