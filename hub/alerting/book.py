"""The alerts table as threshold rules use it: raise once, resolve when the condition clears,
acknowledge with who and when, and list the history."""

from __future__ import annotations

from typing import Any, Literal

import structlog
from pydantic import BaseModel, Field

from ..api import ApiProblem
from ..store import Store, utcnow
from .conditions import Condition

log = structlog.get_logger("farmhand.hub.alerting")


class Delivery(BaseModel):
    channel: str
    event: Literal["raised", "resolved"]
    state: Literal["pending", "sent", "failed"]
    attempts: int
    last_error: str | None
    delivered_at: str | None


class AlertRecord(BaseModel):
    id: int
    kind: str = Field(description="threshold (from a rule) or the raising module's kind, e.g. low_stock")
    rule: str | None
    severity: str
    subject: str
    message: str
    value: float | None
    created_at: str
    resolved_at: str | None
    acknowledged_at: str | None
    acknowledged_by: str | None
    deliveries: list[Delivery] = Field(default_factory=list)


class AlertBook:
    def __init__(self, store: Store) -> None:
        self.store = store

    def open_keys(self) -> dict[tuple[str, str], int]:
        return {(r["rule"], r["subject"]): r["id"] for r in self.store.all(
            "SELECT id, rule, subject FROM alerts WHERE rule IS NOT NULL AND resolved_at IS NULL")}

    def raise_(self, c: Condition) -> int | None:
        """The alert's id, or None when one for this rule and subject is open already."""
        cur = self.store.db.execute(
            "INSERT OR IGNORE INTO alerts (kind, rule, severity, subject, message, value, created_at)"
            " VALUES ('threshold', ?, ?, ?, ?, ?, ?)",
            (c.rule.name, c.rule.severity, c.subject, c.message, c.value, utcnow()))
        if not cur.rowcount:
            return None
        log.warning("alert_raised", rule=c.rule.name, subject=c.subject, severity=c.rule.severity, message=c.message)
        return cur.lastrowid

    def resolve(self, alert_id: int) -> None:
        self.store.db.execute("UPDATE alerts SET resolved_at = ? WHERE id = ? AND resolved_at IS NULL",
                              (utcnow(), alert_id))
        log.info("alert_resolved", alert_id=alert_id)

    def acknowledge(self, alert_id: int, by: str) -> AlertRecord:
        alert = self.get(alert_id)
        if alert.acknowledged_at is None:  # the first operator's acknowledgement stands
            self.store.db.execute("UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ?",
                                  (utcnow(), by, alert_id))
            log.info("alert_acknowledged", alert_id=alert_id, by=by)
        return self.get(alert_id)

    def get(self, alert_id: int) -> AlertRecord:
        row = self.store.one("SELECT * FROM alerts WHERE id = ?", (alert_id,))
        if row is None:
            raise ApiProblem(404, "Alert not found", f"no alert {alert_id}")
        return self._record(row)

    def history(self, limit: int = 200, open_only: bool = False) -> list[AlertRecord]:
        where = " WHERE resolved_at IS NULL" if open_only else ""
        rows = self.store.all(f"SELECT * FROM alerts{where} ORDER BY id DESC LIMIT ?", (limit,))
        return [self._record(r) for r in rows]

    def _record(self, row: dict[str, Any]) -> AlertRecord:
        deliveries = [Delivery(**d) for d in self.store.all(
            "SELECT channel, event, state, attempts, last_error, delivered_at FROM alert_deliveries"
            " WHERE alert_id = ? ORDER BY event, channel", (row["id"],))]
        return AlertRecord(**{k: row[k] for k in AlertRecord.model_fields if k in row}, deliveries=deliveries)
