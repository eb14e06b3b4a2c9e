"""``Metrics``: ``GET /metrics`` in Prometheus' text exposition format, through ``prometheus_client``.

``prometheus_client`` (the Prometheus project's own, well-kept client) writes the format, so the
escaping, the ``# HELP``/``# TYPE`` lines and histogram buckets are right by construction, not by
a formatter of ours. Counters the components keep anyway (ingest, confirmations, the scheduler,
the fleet's kept state) are read at scrape time by a collector, so the hot paths pay nothing extra;
only HTTP latency and state staleness are observed as they happen. The registry is the hub's own,
so several hubs in one process (tests) never share a series. The route is protected like every
other GET of the API (any user's token; Prometheus sends it as ``authorization: credentials``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from protocol.messages import DeviceStatus, Telemetry

from hub.api import Op
from hub.component import Component, Middleware
from hub.fleet import Fleet
from hub.jobs import Jobs
from hub.mqtt import Mqtt, Received

_REJECTS = ("malformed", "wrong_type", "unknown_topic", "sender_mismatch", "device_mismatch", "missing_seq", "errors")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_STALENESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


class Metrics(Component):
    name = "metrics"

    def __init__(self, mqtt: Mqtt, fleet: Fleet, jobs: Jobs) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_HubCollector(mqtt, fleet, jobs))
        self.api_latency = Histogram("farmhand_api_request_seconds", "HTTP API requests by route, method and status",
                                     ("method", "route", "status"), buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.staleness = Histogram(
            "farmhand_state_staleness_seconds",
            "age of a device's status or telemetry (from the agent's timestamp) when the hub's state shows it",
            ("kind",), buckets=_STALENESS_BUCKETS, registry=self.registry)
        self._age = {kind: self.staleness.labels(kind) for kind in ("device_status", "telemetry")}
        mqtt.ingest.observe(DeviceStatus | Telemetry, self._state_applied)

    def ops(self) -> list[Op]:
        return [Op("GET", "/metrics", self.scrape, response_type=CONTENT_TYPE_LATEST, tags=("ops",),
                   summary="Prometheus metrics: ingest, confirmations, agents' outboxes, scheduler, API, devices")]

    async def scrape(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def middlewares(self) -> list[Middleware]:
        @web.middleware
        async def timed(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                        ) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                # The route's template, never the path: one series per route, not per job id.
                route = request.match_info.route.resource
                name = route.canonical if route is not None else "unmatched"
                self.api_latency.labels(request.method, name, str(status)).observe(time.perf_counter() - started)

        return [timed]

    def _state_applied(self, msg: Received[DeviceStatus | Telemetry]) -> None:
        age = time.time() - msg.ts.timestamp()
        self._age[msg.body.type].observe(max(age, 0.0))


class _HubCollector(Collector):
    """What the components count anyway, read at each scrape."""

    def __init__(self, mqtt: Mqtt, fleet: Fleet, jobs: Jobs) -> None:
        self.mqtt, self.fleet, self.jobs = mqtt, fleet, jobs

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | SummaryMetricFamily]:
        ingest, confirm = self.mqtt.ingest, self.mqtt.confirmations
        by_type = CounterMetricFamily("farmhand_ingest_messages", "MQTT messages received, by body type", labels=["type"])
        for kind, n in sorted(ingest.by_type.items()):
            by_type.add_metric([kind], n)
        yield by_type
        yield CounterMetricFamily("farmhand_events_stored", "node events stored (each once)",
                                  value=ingest.counts["events"])
        yield CounterMetricFamily("farmhand_events_duplicate", "node events received again and not stored again",
                                  value=ingest.counts["duplicate_events"])
        rejected = CounterMetricFamily("farmhand_messages_rejected", "messages refused, by reason", labels=["reason"])
        for reason in _REJECTS:
            rejected.add_metric([reason], ingest.counts[reason])
        yield rejected
        yield CounterMetricFamily("farmhand_messages_malformed", "payloads that are not a valid message",
                                  value=ingest.counts["malformed"])
        yield SummaryMetricFamily("farmhand_ingest_batch_seconds", "group commits: one transaction per batch",
                                  count_value=ingest.batches, sum_value=ingest.batch_seconds)
        yield CounterMetricFamily("farmhand_event_acks_published", "confirmations published to nodes",
                                  value=confirm.published)
        lag = GaugeMetricFamily("farmhand_event_ack_lag_seconds",
                                "per node, how long its last confirmation waited after its events' commit",
                                labels=["node"])
        for node, seconds in sorted(confirm.lag_s.items()):
            lag.add_metric([node], seconds)
        yield lag
        waiting = GaugeMetricFamily("farmhand_events_awaiting_gap", "per node, events stored above a gap in its seq"
                                    " (not yet confirmable)", labels=["node"])
        for node, n in sorted(confirm.unconfirmed().items()):
            waiting.add_metric([node], n)
        yield waiting
        depth = GaugeMetricFamily("farmhand_agent_outbox_depth", "events an agent holds unconfirmed, as it reported",
                                  labels=["node"])
        dropped = CounterMetricFamily("farmhand_agent_outbox_dropped", "events an agent's full outbox dropped, as it"
                                      " reported", labels=["node"])
        for node, metrics in sorted(self.fleet.state.host_metrics().items()):
            if metrics.outbox_depth is not None:
                depth.add_metric([node], metrics.outbox_depth)
            if metrics.outbox_dropped is not None:
                dropped.add_metric([node], metrics.outbox_dropped)
        yield depth
        yield dropped
        yield GaugeMetricFamily("farmhand_broker_connected", "1 while the hub's MQTT session is up",
                                value=1 if self.mqtt.link.connected else 0)
        scheduler = self.jobs.scheduler
        yield SummaryMetricFamily("farmhand_scheduler_pass_seconds", "scheduler passes and the time they took",
                                  count_value=scheduler.passes, sum_value=scheduler.pass_seconds)
        states: Counter[str] = Counter(e.state or "unknown" for e in self.fleet.state.entries())
        devices = GaugeMetricFamily("farmhand_devices", "devices by state", labels=["state"])
        for state, n in sorted(states.items()):
            devices.add_metric([state], n)
        yield devices
        yield GaugeMetricFamily("farmhand_devices_online", "devices whose node is connected and lists them",
                                value=sum(e.online for e in self.fleet.state.entries()))
