"""``Live``: the ``/api/v1/live`` WebSocket and what feeds it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from hub.api import Op
from hub.bus import Bus
from hub.component import Component, Middleware
from hub.jobs import JobNotFound, Jobs
from hub.mqtt import Mqtt

from .feed import LiveFeed
from .socket import LiveSocket

if TYPE_CHECKING:
    from hub.fleet import Fleet  # only its snapshots, passed as callables: fleet needs the bus


class LiveSubscribe(BaseModel):
    """What a client sends over the socket, any time; it replaces the set it listens to."""

    subscribe: list[str] = Field(max_length=500, description="topics, e.g. devices, jobs, console, render-jobs")


class LiveUpdate(BaseModel):
    """What the hub sends: JSON arrays of these (several when they pile up)."""

    topic: str
    key: str | None = Field(description="which one changed; null: refetch the whole list")
    data: dict[str, Any] | list[Any] | None = Field(description="the new snapshot, when the hub has it at hand")


class Live(Component):
    name = "live"

    def __init__(self, bus: Bus, mqtt: Mqtt, fleet: Fleet, jobs: Jobs) -> None:
        self.bus = bus
        self.feed = LiveFeed(
            bus, mqtt.ingest, device=fleet.device, node=lambda n: next((x for x in fleet.nodes() if x.id == n), None),
            devices_of=lambda n: [d.id for d in fleet.devices() if d.node == n], job=lambda i: _job(jobs, i))
        mqtt.outbox.observe(self.feed.command_sent)
        self._socket = LiveSocket(bus)

    def ops(self) -> list[Op]:
        return [Op("GET", "/api/v1/live", self._socket.handle, body=LiveSubscribe, response=LiveUpdate,
                   status=101, body_type="application/json", tags=("live",),
                   summary="WebSocket of state changes; send {\"subscribe\": [\"devices\", \"jobs\", ...]}")]

    def middlewares(self) -> list[Middleware]:
        """Announces the API's own changes (POST, PUT, DELETE) to the resource's subscribers."""
        return [self.feed.changes_middleware()]


def _job(jobs: Jobs, job_id: int) -> BaseModel | None:
    try:
        return jobs.service.get(job_id)
    except JobNotFound:
        return None



