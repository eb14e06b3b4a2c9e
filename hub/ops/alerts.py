"""Alerts for operators (low stock for now): one table, raised inside the caller's transaction."""

from __future__ import annotations

import structlog
from aiohttp import web
from pydantic import BaseModel
from sqlite_utils import Database

from hub.api import Listing, Op, respond
from hub.store import Store, utcnow

log = structlog.get_logger("farmhand.hub.alerts")


class Alert(BaseModel):
    id: int
    kind: str
    subject: str
    message: str
    created_at: str
    resolved_at: str | None


def raise_alert(db: Database, kind: str, subject: str, message: str) -> bool:
    """Raise the alert unless the same one (kind, subject and words) is still open; True if raised.

    A node born twice in a row (its own birth when the hub comes back, and the one the hub asks for) reports
    the same unknown job twice: the operator should see it once (the index ``alerts_raised_once``).
    """
    raised = db.execute("INSERT OR IGNORE INTO alerts (kind, subject, message, created_at) VALUES (?, ?, ?, ?)",
                        (kind, subject, message, utcnow())).rowcount > 0
    if raised:
        log.warning("alert", kind=kind, subject=subject, message=message)
    return raised


class Alerts:
    def __init__(self, store: Store) -> None:
        self.store = store

    def open(self) -> list[Alert]:
        return [Alert(**r) for r in self.store.all("SELECT * FROM alerts WHERE resolved_at IS NULL ORDER BY id")]

    def ops(self) -> list[Op]:
        return [Op("GET", "/api/v1/alerts", self.list_alerts, response=Listing[Alert], summary="Open alerts")]

    async def list_alerts(self, request: web.Request) -> web.Response:
        return respond(Listing[Alert](items=self.open()))
