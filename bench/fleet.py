"""A farm at scale through a real Mosquitto: simulated agents, a hub, and what is lost.

(being written)
"""

from __future__ import annotations

from hub.store import Store, utcnow

BENCH_SHA = "b" * 64


def printing_jobs(store: Store, devices: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """A printing job on every device (node -> its devices), so the agents' progress events have a job to
    move; returns node -> device -> job id."""
    with store.transaction() as db:
        db.execute("INSERT OR IGNORE INTO files VALUES (?, 'bench.gcode', 1, ?)", (BENCH_SHA, utcnow()))
        jobs: dict[str, dict[str, str]] = {}
        for node, names in devices.items():
            for device in names:
                cur = db.execute("INSERT INTO jobs (name, file_sha256, state, node, device, created_at)"
                                 " VALUES ('bench', ?, 'printing', ?, ?, ?)", (BENCH_SHA, node, device, utcnow()))
                jobs.setdefault(node, {})[device] = str(cur.lastrowid)
    return jobs
