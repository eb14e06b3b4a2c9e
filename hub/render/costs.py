"""What a render job costs: machine time per node class plus the energy it draws.

The estimate is made from the preview (its frames' measured times scaled to the
job's quality, plus Blender's start-up per task) and priced at the class of
the nodes that rendered the preview. The actual cost adds up every run of
every task, failed attempts included: those hours were spent too.
"""

from __future__ import annotations

import math
from collections import defaultdict
from fnmatch import fnmatchcase
from typing import Any

from protocol.messages import RenderCapabilities

from hub.config import NodeClass, RenderCosts
from hub.jobs import JobNotFound
from hub.store import Store

from .estimate import preview_timing
from .schemas import JOB_TERMINAL, CostFigure, CostLine, RenderCost
from .tasks import load_job


def node_class(classes: list[NodeClass], ref: str, cycles_device: str,
               render: RenderCapabilities | None) -> NodeClass | None:
    gpus = [g.name for g in render.gpus] if render else []
    for c in classes:
        if not fnmatchcase(ref, c.match):
            continue
        if c.gpu is None:
            return c
        if cycles_device != "CPU" and any(fnmatchcase(name, c.gpu) for name in gpus):
            return c
    return None


class RenderCosting:
    def __init__(self, store: Store, costs: RenderCosts) -> None:
        self.store = store
        self.costs = costs

    def cost(self, job_id: int) -> RenderCost:
        job = load_job(self.store.db, job_id)
        if job is None:
            raise JobNotFound(f"no render job {job_id}")
        timing = preview_timing(self.store.db, job)
        estimate = None
        if timing is not None:
            frames = job["frame_end"] - job["frame_start"] + 1
            size = job["chunk_size"] or self._planned_chunk(job_id) or frames
            hours = (frames * timing.frame_s + math.ceil(frames / size) * timing.overhead_s) / 3600
            estimate = self._figure([(self._class_of_preview(job), hours)])
        runs = self._runs(job)
        return RenderCost(job_id=job_id, currency=self.costs.currency, estimate=estimate,
                          estimated_frame_s=round(timing.frame_s, 3) if timing else None,
                          actual=self._figure(runs) if runs else None,
                          final=job["state"] in {s.value for s in JOB_TERMINAL})

    def _planned_chunk(self, job_id: int) -> int | None:
        row = self.store.one("SELECT MAX(frame_end - frame_start + 1) AS n FROM render_tasks WHERE job_id = ?"
                             " AND kind = 'frames'", (job_id,))
        return row["n"] if row else None

    def _class_of(self, node: str, device: str, job: dict[str, Any]) -> str:
        row = self.store.one("SELECT render FROM devices WHERE node = ? AND id = ?", (node, device))
        render = RenderCapabilities.model_validate_json(row["render"]) if row and row["render"] else None
        c = node_class(self.costs.classes, f"{node}/{device}", job["cycles_device"], render)
        return c.name if c else "unpriced"

    def _class_of_preview(self, job: dict[str, Any]) -> str:
        row = self.store.one("SELECT node, device FROM render_tasks WHERE job_id = ? AND kind = 'preview'"
                             " AND state = 'completed' ORDER BY id LIMIT 1", (job["id"],))
        assert row is not None  # a timing exists only once a preview task completed
        return self._class_of(row["node"], row["device"], job)

    def _runs(self, job: dict[str, Any]) -> list[tuple[str, float]]:
        rows = self.store.all(
            "SELECT node, device, duration_s FROM render_tasks WHERE job_id = ? AND state = 'completed'"
            " UNION ALL SELECT node, device, duration_s FROM render_failures WHERE job_id = ?"
            " AND duration_s IS NOT NULL", (job["id"], job["id"]))
        return [(self._class_of(r["node"], r["device"], job), r["duration_s"] / 3600) for r in rows]

    def _figure(self, runs: list[tuple[str, float]]) -> CostFigure:
        hours: dict[str, float] = defaultdict(float)
        for name, h in runs:
            hours[name] += h
        by_name = {c.name: c for c in self.costs.classes}
        lines = []
        for name, h in sorted(hours.items()):
            c = by_name.get(name)
            kwh = h * c.power_w / 1000 if c else 0.0
            lines.append(CostLine(node_class=name, hours=round(h, 6), machine_cost=round(h * c.hourly_rate, 6) if c
                                  else 0.0, energy_kwh=round(kwh, 6),
                                  energy_cost=round(kwh * self.costs.energy_price_per_kwh, 6)))
        return CostFigure(total=round(sum(x.machine_cost + x.energy_cost for x in lines), 6),
                          hours=round(sum(x.hours for x in lines), 6),
                          energy_kwh=round(sum(x.energy_kwh for x in lines), 6), lines=lines)
