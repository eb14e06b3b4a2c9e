"""The serial benchmark's Klippy case: the agent's driver on the real Klippy's pty, against a one-line-in-flight sender.

    python -m bench.serial_klippy --one-in-flight PORT FILE     (that sender alone; prints one JSON object)

``bench.serial_stream`` runs ``klippy_case``: the real Klippy (``.peers/klippy``,
started by ``tests/klippykit.py``, no printer behind it) is sent a file of
relative extruder moves of distinct lengths three ways, one after another in
the same run: by the agent's driver reading answers as they come (what it does
on a pty), by the same driver held to a 250000-baud wire's pace (what it did
before it knew a pty has no wire), and by the simplest sender there is, one
line in flight (write a line, wait for its ok; from the benchmark's own
process). The driver and the one-in-flight sender run twice each, interleaved,
and keep their best (the machine is shared). Each is exactly-once when the
extruder position Klippy reports moved by the file's sum every time.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import time
import tty
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BAUD = 250000
ROUNDS = 2


def extrusion_file(path: Path, lines: int) -> float:
    """``lines`` relative extruder moves of 1 to 97 µm after an M83; returns their sum (a lost or doubled line shows)."""
    lengths = [(i % 97 + 1) / 1000 for i in range(lines)]
    path.write_text("M83\n" + "".join(f"G1 E{e:.3f} F6000\n" for e in lengths))
    return sum(lengths)


def one_in_flight(port: str, file: Path) -> dict[str, float]:
    """Send each line and wait for its ``ok`` before the next: what a naive host does."""
    commands = [line for line in file.read_text().splitlines() if line.strip()]
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    pending = b""
    started = time.monotonic()
    try:
        for command in commands:
            os.write(fd, command.encode() + b"\n")
            while True:
                poller.poll()
                *complete, pending = (pending + os.read(fd, 65536)).split(b"\n")
                if any(line.strip().startswith(b"ok") for line in complete):
                    break
    finally:
        os.close(fd)
    return {"lines": len(commands), "seconds": time.monotonic() - started}


def _driver(driver_python: str, args: list[str]) -> dict[str, object]:
    out = subprocess.run([driver_python, *args], capture_output=True, text=True, check=False, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"the driver failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def klippy_case(work: Path, lines: int, driver_python: str) -> dict[str, object]:
    """Lines/s of the driver unpaced, the driver wire-paced and a one-in-flight sender, on one Klippy."""
    from tests.klippykit import running_klippy

    job = work / "klippy-extrusions.gcode"
    total = extrusion_file(job, lines)
    rates: dict[str, float] = {}
    once: dict[str, bool] = {}
    with running_klippy(work / "klippy") as klippy:
        def position() -> float:
            return float(klippy.query({"toolhead": ["position"]})["toolhead"]["position"][3])

        # Other programs share this machine: the two compared run ROUNDS times, interleaved, each keeping its best.
        for name in ("one_in_flight", "driver") * ROUNDS + ("driver_wire_paced",):
            before = position()
            if name == "one_in_flight":
                sent = one_in_flight(str(klippy.pty), job)
                count, seconds, ok = int(sent["lines"]), float(sent["seconds"]), True
            else:
                pacing = "none" if name == "driver" else "wire"
                measured = _driver(driver_python, ["-m", "bench.serial_stream", "--driver", "--baud", str(BAUD),
                                                   "--profile", "klipper", "--pacing", pacing, f"{klippy.pty}={job}"])
                [result] = measured["prints"]  # type: ignore[misc]
                count, seconds, ok = int(result["lines"]), float(result["seconds"]), bool(result["ok"])
            rates[name] = max(rates.get(name, 0.0), round(count / seconds, 1))
            once[name] = once.get(name, True) and ok and abs(position() - before - total) < 1e-6
    return {
        "lines": lines + 1,
        "lines_per_s": rates,
        "vs_one_in_flight": round(rates["driver"] / rates["one_in_flight"], 2),
        "exactly_once": once,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--one-in-flight", nargs=2, metavar=("PORT", "FILE"), required=True)
    args = p.parse_args()
    port, file = args.one_in_flight
    print(json.dumps(one_in_flight(port, Path(file))))


if __name__ == "__main__":
    sys.exit(main())
