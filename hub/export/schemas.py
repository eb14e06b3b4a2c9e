"""The outbound events' public shapes (schema version 1) and the export HTTP bodies.

An event is ``{id, type, schema_version, time, payload}``; ``type`` names the payload's model. The payloads
are written by the triggers of ``migration.py``: a field added there is added here, a field renamed or
removed is a new schema version.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, Field, TypeAdapter

from hub.api import RowCursor, RowId

SCHEMA_VERSION = 1


class JobPayload(BaseModel):
    job_id: int
    name: str
    state: str = Field(description="queued, assigned, printing, paused, completed, failed, cancelled, interrupted")
    file_sha256: str
    priority: int
    node: str | None
    device: str | None
    attempt: int
    progress: float | None = Field(description="0..1")
    error: str | None
    order_id: int | None = Field(description="the order the job prints a part of, if any")


class JobProgressPayload(BaseModel):
    job_id: int
    name: str
    milestone: Literal[25, 50, 75] = Field(description="the highest milestone (percent) the print passed")
    progress: float
    node: str | None
    device: str | None
    attempt: int


class OrderPayload(BaseModel):
    order_id: int
    customer: str
    reference: str | None
    deadline: str | None
    price: float | None
    created_at: str
    cancelled_at: str | None


class OrderStagePayload(BaseModel):
    order_id: int
    stage: str
    by: str
    at: str
    notes: str | None


class StockBookingPayload(BaseModel):
    job_id: int
    attempt: int
    spool_id: int | None = Field(description="None: the filament was used but no spool was loaded")
    grams: float
    booked_at: str


class SpoolPayload(BaseModel):
    spool_id: int
    filament_id: int
    material: str | None
    initial_weight: float
    used_weight: float
    remaining_weight: float
    archived: bool
    node: str | None
    device: str | None


class AlertPayload(BaseModel):
    alert_id: int
    kind: str
    subject: str
    message: str
    created_at: str
    resolved_at: str | None


class RenderJobPayload(BaseModel):
    render_job_id: int
    name: str
    state: str = Field(description="queued, rendering, paused, completed, failed, cancelled")
    frame_start: int
    frame_end: int
    error: str | None


class _Event(BaseModel):
    id: int = Field(description="monotonic: the order the changes were committed in")
    schema_version: int = SCHEMA_VERSION
    time: str = Field(description="UTC, ISO 8601")


JobEventType = Literal["job.queued", "job.assigned", "job.printing", "job.paused", "job.completed", "job.failed",
                       "job.cancelled", "job.interrupted"]
RenderEventType = Literal["render_job.queued", "render_job.rendering", "render_job.paused", "render_job.completed",
                          "render_job.failed", "render_job.cancelled"]


class JobEvent(_Event):
    type: JobEventType
    payload: JobPayload


class JobProgressEvent(_Event):
    type: Literal["job.progress"]
    payload: JobProgressPayload


class OrderEvent(_Event):
    type: Literal["order.created", "order.cancelled"]
    payload: OrderPayload


class OrderStageEvent(_Event):
    type: Literal["order.stage"]
    payload: OrderStagePayload


class StockBookingEvent(_Event):
    type: Literal["stock.booked"]
    payload: StockBookingPayload


class SpoolEvent(_Event):
    type: Literal["stock.spool"]
    payload: SpoolPayload


class AlertEvent(_Event):
    type: Literal["alert.raised", "alert.resolved"]
    payload: AlertPayload


class RenderJobEvent(_Event):
    type: RenderEventType
    payload: RenderJobPayload


OutboundEvent = Annotated[JobEvent | JobProgressEvent | OrderEvent | OrderStageEvent | StockBookingEvent
                          | SpoolEvent | AlertEvent | RenderJobEvent, Field(discriminator="type")]
EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(OutboundEvent)
EVENT_TYPES: tuple[str, ...] = tuple(
    t for model in (JobEvent, JobProgressEvent, OrderEvent, OrderStageEvent, StockBookingEvent, SpoolEvent,
                    AlertEvent, RenderJobEvent)
    for t in model.model_fields["type"].annotation.__args__)  # type: ignore[union-attr]


def event_from_row(row: dict[str, Any]) -> Any:
    """A stored ``outbound_events`` row as its typed event."""
    return EVENT_ADAPTER.validate_python({**row, "payload": json.loads(row["payload"])})


def wire_json(row: dict[str, Any]) -> str:
    """A row as the JSON a consumer receives; the payload is spliced in as stored, not re-encoded."""
    return (f'{{"id":{row["id"]},"type":{json.dumps(row["type"])},"schema_version":{row["schema_version"]},'
            f'"time":{json.dumps(row["time"])},"payload":{row["payload"]}}}')


def json_schema() -> dict[str, Any]:
    """What `farmhand export schema` prints: every event, one document."""
    schema = EVENT_ADAPTER.json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Farmhand outbound event",
            "description": f"schema_version {SCHEMA_VERSION}; types: {', '.join(EVENT_TYPES)}", **schema}


# ------------------------------------------------------------------ HTTP bodies


class EventQuery(BaseModel):
    after: RowCursor = Field(0, description="return events with an id greater than this")
    limit: int = Field(500, ge=1, le=5000)
    type: str | None = Field(None, description="only events of these types, comma-separated (job.*: a prefix)")


class EventPage(BaseModel):
    items: list[OutboundEvent]
    next_after: int = Field(description="pass as ?after= for the next page (the last id seen, or `after`)")
    last_id: int = Field(description="the newest event id the hub holds")


class WebhookCreate(BaseModel):
    url: AnyHttpUrl
    event_types: list[str] = Field(default_factory=list,
                                   description="types to deliver ('job.*' matches a prefix); empty: all")
    secret: str | None = Field(None, min_length=16, max_length=256,
                               description="the HMAC key; unset: the hub makes one and returns it once")
    from_id: RowCursor | None = Field(None, description="deliver events after this id; unset: only new events")


class Webhook(BaseModel):
    id: int
    url: str
    event_types: list[str]
    last_id: int = Field(description="the last event id delivered (or dead-lettered)")
    created_at: str
    dead_letters: int
    secret: str | None = Field(None, description="returned once, when the hub made it")


class DeadLetter(BaseModel):
    webhook_id: int
    event_id: int
    type: str | None
    attempts: int
    error: str
    failed_at: str


class ReplayQuery(BaseModel):
    from_: RowId = Field(alias="from", description="deliver again every subscribed event with id >= this")


class ExportStatus(BaseModel):
    last_event_id: int
    redis: dict[str, Any] | None = Field(description="the Redis exporter's cursor and counters; None when off")
    webhooks: dict[str, int]
