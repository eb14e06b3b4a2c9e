"""HTTP routes of the export: the pull API over the event log, its JSON Schema, webhooks and their dead letters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol.codec import describe

from hub.api import ApiProblem, Items, RouteTable, body, path_id, respond

from .event_log import EventLog
from .schemas import (
    DeadLetter,
    EventPage,
    EventQuery,
    ExportStatus,
    ReplayQuery,
    Webhook,
    WebhookCreate,
    event_from_row,
    json_schema,
)
from .webhooks import Webhooks


M = TypeVar("M", bound=BaseModel)


def _query(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise ApiProblem(422, "Invalid query", describe(exc)) from None


class EventSchemaDocument(BaseModel):
    """A JSON Schema (2020-12) document: one of the outbound event types, told apart by ``type``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    schema_: str = Field(alias="$schema")
    title: str
    description: str
    defs: dict[str, Any] = Field(alias="$defs")
    oneOf: list[dict[str, Any]]  # noqa: N815 - JSON Schema's own keyword


class ExportApi:
    def __init__(self, events: EventLog, webhooks: Webhooks, status: Callable[[], ExportStatus]) -> None:
        self.events = events
        self.webhooks = webhooks
        self.status = status

    def table(self) -> RouteTable:
        t, tags = RouteTable(), ("export",)
        t.add("GET", "/api/v1/events", self.list_events, query=EventQuery, response=EventPage, tags=tags,
              summary="The outbound event log after an id, oldest first, paged (pull consumers)")
        t.add("GET", "/api/v1/events/schema", self.schema, response=EventSchemaDocument, tags=tags,
              summary="The JSON Schema of every outbound event (as `farmhand export schema` prints)")
        t.add("GET", "/api/v1/export", self.export_status, response=ExportStatus, tags=tags,
              summary="How far the Redis exporter and the webhooks are")
        hooks = "/api/v1/webhooks"
        t.add("POST", hooks, self.create, body=WebhookCreate, response=Webhook, status=201, tags=tags,
              summary="Subscribe a URL to event types (the secret is returned once when the hub makes it)")
        t.add("GET", hooks, self.list_hooks, response=Items[Webhook], tags=tags, summary="Webhook subscriptions")
        t.add("GET", hooks + "/{id}", self.get, response=Webhook, tags=tags, summary="One webhook")
        t.add("DELETE", hooks + "/{id}", self.delete, status=204, tags=tags, summary="Stop delivering to a URL")
        t.add("GET", hooks + "/{id}/dead-letters", self.dead_letters, response=Items[DeadLetter], tags=tags,
              summary="Events the receiver did not take after every retry")
        t.add("POST", hooks + "/{id}/replay", self.replay, query=ReplayQuery, response=Webhook, tags=tags,
              summary="Deliver every subscribed event from an id on again, dead letters included")
        return t

    async def list_events(self, request: web.Request) -> web.Response:
        query = _query(request, EventQuery)
        types = [t.strip() for t in query.type.split(",") if t.strip()] if query.type else None
        rows = self.events.after(query.after, query.limit, types)
        return respond(EventPage(items=[event_from_row(r) for r in rows],
                                 next_after=rows[-1]["id"] if rows else query.after, last_id=self.events.last_id()))

    async def schema(self, request: web.Request) -> web.Response:
        return respond(json_schema())

    async def export_status(self, request: web.Request) -> web.Response:
        return respond(self.status())

    async def create(self, request: web.Request) -> web.Response:
        return respond(self.webhooks.create(await body(request, WebhookCreate, "Invalid webhook")), 201)

    async def list_hooks(self, request: web.Request) -> web.Response:
        return respond(Items[Webhook](items=self.webhooks.list()))

    async def get(self, request: web.Request) -> web.Response:
        return respond(self.webhooks.get(path_id(request, "webhook")))

    async def delete(self, request: web.Request) -> web.Response:
        self.webhooks.delete(path_id(request, "webhook"))
        return web.Response(status=204)

    async def dead_letters(self, request: web.Request) -> web.Response:
        return respond(Items[DeadLetter](items=self.webhooks.dead_letters(path_id(request, "webhook"))))

    async def replay(self, request: web.Request) -> web.Response:
        query = _query(request, ReplayQuery)
        return respond(self.webhooks.replay(path_id(request, "webhook"), query.from_))
