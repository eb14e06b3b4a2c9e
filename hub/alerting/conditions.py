"""Which rule conditions hold right now: one pass over the fleet's readings and the running prints.

A condition is keyed by (rule, subject); its value and message say how far past
the threshold it is. Whether it has held long enough, and what follows, is the
book's and the component's business, not this module's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from ..fleet import Fleet
from ..store import Store
from .config import AlertRule, RuleKind


@dataclass(frozen=True)
class Condition:
    rule: AlertRule
    subject: str
    value: float
    message: str


def _age_s(at: str | None, now: datetime) -> float | None:
    return (now - datetime.fromisoformat(at)).total_seconds() if at else None


class Conditions:
    def __init__(self, store: Store, fleet: Fleet, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.fleet = fleet
        self.clock = clock
        self._frames: dict[int, tuple[int, float]] = {}  # render task → (frames done, when that count was new)

    def now(self, rules: list[AlertRule]) -> list[Condition]:
        if not rules:
            return []
        at = datetime.now(UTC)
        devices = self.fleet.devices()
        found: list[Condition] = []
        for rule in rules:
            if rule.kind == RuleKind.HEATER_OFF_TARGET:
                for d in devices:
                    if not d.online or not fnmatchcase(d.ref, rule.subjects):
                        continue
                    for name, heater in d.temperatures.items():
                        target = heater.target
                        if not target or (rule.heater and name != rule.heater):
                            continue
                        off = abs(heater.actual - target)
                        if off > rule.threshold:
                            found.append(Condition(rule, f"{d.ref}/{name}", round(off, 1),
                                                   f"{d.ref} heater {name} at {heater.actual:.1f} °C, target "
                                                   f"{target:.0f} °C: {off:.1f} °C off (limit {rule.threshold:g})"))
            elif rule.kind == RuleKind.SILENCE:
                for d in devices:
                    if not fnmatchcase(d.ref, rule.subjects):
                        continue
                    telemetry = self.fleet.heard_at(d.node, d.id)
                    heard = max(d.updated_at, datetime.fromisoformat(telemetry)) if telemetry else d.updated_at
                    quiet = (at - heard).total_seconds()
                    if quiet > rule.threshold:
                        found.append(Condition(
                            rule, d.ref, round(quiet, 1),
                            f"{d.ref}: nothing heard for {quiet:.0f} s (limit {rule.threshold:g} s)"))
            elif rule.kind == RuleKind.PRINT_OVERRUN:
                found += self._overruns(rule, at)
            elif rule.kind == RuleKind.RENDER_STALLED:
                found += self._stalled_renders(rule)
            elif rule.kind == RuleKind.HOST_METRIC:
                for node in self.fleet.nodes():
                    reading = getattr(node.metrics, rule.metric or "", None) if node.metrics else None
                    if node.online and reading is not None and fnmatchcase(node.id, rule.subjects) \
                            and reading > rule.threshold:
                        found.append(Condition(rule, node.id, reading,
                                               f"{node.id}: {rule.metric} {reading:g} above {rule.threshold:g}"))
        return found

    def _stalled_renders(self, rule: AlertRule) -> list[Condition]:
        now, found, seen = self.clock(), [], {}
        for task in self.store.all("SELECT id, job_id, node, device, frames_done FROM render_tasks"
                                   " WHERE state = 'running'"):
            done, since = self._frames.get(task["id"], (task["frames_done"], now))
            if task["frames_done"] != done:
                since = now
            seen[task["id"]] = (task["frames_done"], since)
            subject = f"{task['node']}/{task['device']}"
            if now - since > rule.threshold and fnmatchcase(subject, rule.subjects):
                found.append(Condition(rule, f"render-task/{task['id']}", round(now - since, 1),
                                       f"render task {task['id']} (job {task['job_id']}) on {subject}: no new frame "
                                       f"for {now - since:.0f} s after {task['frames_done']}"))
        self._frames = seen
        return found

    def _overruns(self, rule: AlertRule, at: datetime) -> list[Condition]:
        found = []
        for job in self.store.all(
                "SELECT j.id, j.name, j.node, j.device, j.started_at, a.body FROM jobs j JOIN file_analyses a"
                " ON a.sha256 = j.file_sha256 AND a.ok = 1 WHERE j.state IN ('printing', 'paused')"
                " AND j.started_at IS NOT NULL"):
            estimate = (json.loads(job["body"]).get("estimate") or {}).get("total_s")
            ran = _age_s(job["started_at"], at)
            subject = f"{job['node']}/{job['device']}"
            if not estimate or ran is None or not fnmatchcase(subject, rule.subjects):
                continue
            over = (ran / estimate - 1) * 100
            if over > rule.threshold:
                found.append(Condition(rule, f"job/{job['id']}", round(over, 1),
                                       f"job {job['id']} ({job['name']}) on {subject} has run {ran:.0f} s, "
                                       f"{over:.0f} % past its estimate of {estimate:.0f} s"))
        return found
