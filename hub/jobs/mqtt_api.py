"""Scripts' requests over MQTT, answered on their response topic.

The same ``JobService`` calls as the HTTP API, nothing re-implemented. A
submission is keyed by (client, correlation_id), so a request the broker
delivers twice (the hub stopped before acknowledging it) queues one job.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError

from protocol import codec, topics
from protocol.codec import describe
from protocol.messages import Request, Response
from protocol.mqtt import NotConnected

from hub.api import Items, dump
from hub.mqtt import Publisher, Received

from .schemas import Job, JobCreate, JobFilter, JobRef
from .service import JobError, JobService

log = structlog.get_logger("farmhand.hub.requests")

class ScriptRequests:
    def __init__(self, jobs: JobService, sender: str, publisher: Publisher) -> None:
        self.jobs = jobs
        self.sender = sender
        self.publisher = publisher
        self.counts: Counter[str] = Counter()
        # Each method gets the request's idempotency key and its validated params.
        self._methods: dict[str, tuple[type[BaseModel], Callable[[str, Any], BaseModel]]] = {
            "submit_job": (JobCreate, lambda key, p: self.jobs.create(p, request_key=key)[0]),
            "get_job": (JobRef, lambda _key, p: self.jobs.get(p.id)),
            "list_jobs": (JobFilter, lambda _key, p: Items[Job](items=self.jobs.list(p.state))),
            "cancel_job": (JobRef, lambda _key, p: self.jobs.cancel(p.id).job),
        }

    def answer(self, client: str, request: Request) -> Response:
        model, call = self._methods[request.method]
        try:
            result = call(f"mqtt:{client}:{request.correlation_id}", model.model_validate(request.params))
        except ValidationError as exc:
            self.counts["invalid"] += 1
            return Response(correlation_id=request.correlation_id, ok=False, error=f"params: {describe(exc)}")
        except JobError as exc:
            self.counts["refused"] += 1
            return Response(correlation_id=request.correlation_id, ok=False, error=str(exc))
        self.counts["answered"] += 1
        return Response(correlation_id=request.correlation_id, ok=True, result=dump(result))

    def handle(self, msg: Received[Request]) -> None:
        """Ingest subscriber for ``Request``s on a script's request topic."""
        client, request = msg.client, msg.body
        assert client is not None
        response = self.answer(client, request)
        log.info("script_request", client=client, method=request.method, correlation_id=request.correlation_id,
                 ok=response.ok, error=response.error)
        try:
            self.publisher.publish(topics.hub_response(client), codec.encode(codec.make(self.sender, response)), qos=1)
        except NotConnected:
            # The script asks again; a repeated submission returns the same job.
            self.counts["unanswered"] += 1

    def counters(self) -> dict[str, int]:
        return dict(self.counts)
