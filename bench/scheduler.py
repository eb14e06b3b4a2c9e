"""How long a full scheduler pass takes on a big farm with a deep queue.

    python -m bench.scheduler            # 10,000 queued jobs, 1,000 printers
    python -m bench.scheduler --quick    # 1,000 jobs, 100 printers

Printers are of five machine models with mixed materials, colours, nozzles,
tags and spool levels; jobs ask for a mix of those (some for none). A pass is
what ``Scheduler.assign`` does on a real SQLite file: read the free printers
and the queue, match them, and commit every assignment with its start command
(synchronous=FULL). The last line printed is one JSON object: ``reschedule_s``
against ``limit_s`` (1 s), and their ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from hub.mqtt import CommandOutbox, MqttLink
from hub.jobs.matching import plan
from hub.jobs.scheduler import Scheduler
from hub.jobs.snapshot import free_printers, queued_needs
from hub.store import Store, utcnow
from protocol.logs import configure

LIMIT_S = 1.0
MODELS = ["prusa-mk3s", "prusa-mk4", "ender3-v2", "voron-2.4-350", "bambu-x1c"]
MATERIALS = [("PLA", 1.24), ("PETG", 1.27), ("ABS", 1.04), ("ASA", 1.07), ("TPU", 1.21)]
COLORS = ["000000", "FFFFFF", "FF8000", "2040C0", "C02020", "808080"]
TAGS = [[], [], ["enclosed"], ["fast"], ["enclosed", "fast"]]


def populate(store: Store, printers: int, jobs: int, rng: random.Random) -> None:
    now = utcnow()
    db = store.db
    with store.transaction():
        db.execute("INSERT INTO files VALUES (?, 'part.gcode', 1000, ?)", ("a" * 64, now))
        db.execute("INSERT INTO vendors (name, registered) VALUES ('Bench', ?)", (now,))
        filament_ids = {}
        for material, density in MATERIALS:
            for color in COLORS:
                filament_ids[material, color] = db.execute(
                    "INSERT INTO filaments (vendor_id, name, material, color_hex, density, diameter, price, weight,"
                    " registered) VALUES (1, ?, ?, ?, ?, 1.75, 25, 1000, ?)",
                    (f"{material} {color}", material, color, density, now)).lastrowid
        for n in range(printers // 10 + 1):
            db.execute("INSERT INTO nodes VALUES (?, 1, 'bench', 'bench', ?)", (f"pi-{n}", now))
        for i in range(printers):
            node, device, model = f"pi-{i // 10}", f"p{i}", rng.choice(MODELS)
            db.execute("INSERT INTO devices (node, id, kind, model, listed, state, updated_at)"
                       " VALUES (?, ?, 'serial_gcode', ?, 1, 'idle', ?)", (node, device, model, now))
            db.execute("INSERT INTO device_profiles (node, device, nozzle_diameter, tags, auto_eject, updated_at)"
                       " VALUES (?, ?, ?, ?, 1, ?)",
                       (node, device, rng.choice([0.4, 0.4, 0.4, 0.6]), json.dumps(rng.choice(TAGS)), now))
            material, color = rng.choice(MATERIALS)[0], rng.choice(COLORS)
            db.execute("INSERT INTO spools (filament_id, initial_weight, used_weight, node, device, registered)"
                       " VALUES (?, 1000, ?, ?, ?, ?)",
                       (filament_ids[material, color], rng.uniform(0, 990), node, device, now))
        for j in range(jobs):
            job_id = db.execute("INSERT INTO jobs (name, file_sha256, state, priority, created_at)"
                                " VALUES (?, ?, 'queued', ?, ?)",
                                (f"job {j}", "a" * 64, rng.choice([0, 0, 0, 1, 5]), now)).lastrowid
            if rng.random() < 0.1:
                continue  # no constraints at all
            db.execute(
                "INSERT INTO job_requirements (job_id, material, color, nozzle_diameter, machine_model, size_x,"
                " size_y, size_z, filament_mm, tags, deadline) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, rng.choice(MATERIALS)[0], rng.choice(COLORS + [None]), rng.choice([0.4, 0.4, 0.6, None]),
                 rng.choice(MODELS + [None] * 3), rng.uniform(5, 240), rng.uniform(5, 240), rng.uniform(1, 200),
                 rng.uniform(100, 60_000), json.dumps(rng.choice(TAGS[:4])),
                 rng.choice([None, f"2030-01-{rng.randint(10, 28)}T00:00:00.000+00:00"])))


def main(quick: bool) -> dict[str, float | int]:
    printers, jobs = (100, 1_000) if quick else (1_000, 10_000)
    tmp = Path(tempfile.mkdtemp(prefix="farmhand-bench-scheduler-"))
    try:
        store = Store(tmp)
        print(f"populating {printers} printers and {jobs} queued jobs…", flush=True)
        populate(store, printers, jobs, random.Random(4))
        started = time.perf_counter()
        snapshot = free_printers(store.db), queued_needs(store.db)
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        planned = plan(snapshot[1], snapshot[0])
        plan_s = time.perf_counter() - started
        print(f"read {read_s:.3f} s, matched {len(planned)} jobs in {plan_s:.3f} s", flush=True)
        scheduler = Scheduler(store, CommandOutbox(store, "bench", MqttLink()), ack_timeout_s=60, file_url=lambda sha: sha,
                              connected=lambda: True)
        started = time.perf_counter()
        assigned = scheduler.assign()
        reschedule_s = time.perf_counter() - started
        print(f"full pass (read, match, commit): {assigned} assigned in {reschedule_s:.3f} s", flush=True)
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"printers": printers, "jobs": jobs, "assigned": assigned, "read_s": round(read_s, 4),
            "plan_s": round(plan_s, 4), "reschedule_s": round(reschedule_s, 4), "limit_s": LIMIT_S,
            "ratio": round(reschedule_s / LIMIT_S, 3)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 jobs and 100 printers")
    args = parser.parse_args()
    configure(level="warning")
    print(json.dumps(main(args.quick)))
