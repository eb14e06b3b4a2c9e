"""The health report: liveness and every component's counters (``GET /healthz``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str
    hub_id: str
    mqtt_connected: bool
    schema_version: int
    counters: dict[str, dict[str, int]] = Field(
        description="ingest and request counters: malformed payloads, duplicates, rejects; rows pruned"
    )
