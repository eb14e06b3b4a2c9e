"""Reference figures for the serial benchmark, measured on the same machine in the driver's interpreter.

    python -m bench.serial_reference --wake-floor WAKES --interval S
    python -m bench.serial_reference --engine-cost LINES --interval S FILE

``bench.serial_stream`` runs both and prints them beside its cases: what a
wake-up costs a do-nothing reader thread, and what the engine's own work per
line costs back to back and a few lines per wake-up. Each prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wake_floor(wakes: int, interval_s: float) -> None:
    """CPU of the least an agent can do per answer: wake, read it, write one line back.

    The reader is a thread waiting in ``poll`` on its port, as the agent's serial
    threads do. A peer process on the other end of a pty answers each line after
    ``interval_s`` (the wire time of one line), so the reader sleeps between
    wake-ups as the driver does. Whatever the machine charges for a wake-up (on a
    virtual machine, far more than the Python that runs) is in this figure too: it
    is the floor for firmware that answers every line on its own (no ADVANCED_OK),
    where the receive buffer holds only a few lines and each answer must be acted on.
    """
    import pty
    import select
    import threading
    import tty

    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    pid = os.fork()
    if pid == 0:
        os.close(slave)
        try:
            while os.read(master, 4096):
                time.sleep(interval_s)
                os.write(master, b"ok\n")
        finally:
            os._exit(0)
    os.close(master)
    os.set_blocking(slave, False)
    line = b"N1234 G1 X100.123 Y105.456 E0.00999*123\n"

    def ping_pong() -> None:
        poller = select.poll()
        poller.register(slave, select.POLLIN)
        seen = 0
        os.write(slave, line)
        while seen < wakes:
            poller.poll()
            seen += os.read(slave, 4096).count(b"\n")
            os.write(slave, line)

    before = resource.getrusage(resource.RUSAGE_SELF)
    reader = threading.Thread(target=ping_pong)
    reader.start()
    reader.join()
    after = resource.getrusage(resource.RUSAGE_SELF)
    os.close(slave)
    os.waitpid(pid, 0)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"wake_us": cpu / wakes * 1e6}))


def engine_cost(path: Path, lines: int, per_wake: int, interval_s: float) -> None:
    """The engine's own work per line (answer an ok, frame and take the next line), back to back and in wake-ups.

    No port, no second process: the same work, once in a tight loop and once
    ``per_wake`` lines at a time with a sleep of ``interval_s`` between, as the
    serial thread does it. The gap between the two is what this machine charges
    for work that starts after a sleep (cold caches, a slowed clock, a host's
    other tenants); on a virtual machine it can be several times the work itself.
    """
    import threading

    from agent.serial.gcode import GcodeFile
    from agent.serial.host import HostEngine
    from agent.serial.responses import OK

    job = GcodeFile.scan(path)
    lines = min(lines, job.count - per_wake)

    def per_line(sleep_s: float) -> float:
        engine = HostEngine(128)
        engine.sync()
        engine.take()
        engine.answer(OK)
        engine.start_job(job)
        engine.take()
        out: list[float] = []

        def run() -> None:
            done = 0
            start = time.thread_time()
            while done < lines:
                if sleep_s:
                    time.sleep(sleep_s)
                for _ in range(per_wake):
                    engine.answer(OK)
                engine.take()
                done += per_wake
            out.append((time.thread_time() - start) / done)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        return out[0]

    print(json.dumps({"tight_us": per_line(0.0) * 1e6, "woken_us": per_line(interval_s) * 1e6}))


def in_driver(driver_python: str, *args: str) -> dict[str, float]:
    """Run this module with ``args`` in the driver's interpreter; the JSON object it printed last."""
    out = subprocess.run([driver_python, "-m", "bench.serial_reference", *args],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_engine_cost(driver_python: str, path: Path, lines: int, baud: int) -> dict[str, float]:
    interval = 2 * 40 * 10 / baud  # two 40-byte lines on the wire: a plain-ok printer's pace
    return in_driver(driver_python, "--engine-cost", str(lines), "--interval", str(interval), str(path))


def measure_wake_floor(driver_python: str, wakes: int, baud: int) -> float:
    interval = 40 * 10 / baud  # one 40-byte line on the wire
    return in_driver(driver_python, "--wake-floor", str(wakes), "--interval", str(interval))["wake_us"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wake-floor", type=int, default=0, help="wake-ups to measure")
    p.add_argument("--engine-cost", type=int, default=0, help="job lines to take")
    p.add_argument("--interval", type=float, default=0.0016, help="seconds between wake-ups")
    p.add_argument("file", nargs="?", type=Path, help="the job file (with --engine-cost)")
    args = p.parse_args()
    if args.wake_floor:
        wake_floor(args.wake_floor, args.interval)
    elif args.engine_cost and args.file:
        engine_cost(args.file, args.engine_cost, 2, args.interval)
    else:
        p.error("give --wake-floor, or --engine-cost with a file")


if __name__ == "__main__":
    main()
