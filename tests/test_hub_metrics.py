"""``GET /metrics``: Prometheus' own parser reads it, and it counts what the hub was sent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from protocol import topics
from protocol.messages import DeviceState, Heater, HostMetrics, JobStarted, Telemetry

from .hubkit import Farm, eventually, farm, isolated_farm  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_parse_and_count_what_the_hub_was_sent(isolated_farm: Farm) -> None:
    farm = isolated_farm
    hub = await farm.hub()
    node = await farm.node("a", "b", state=DeviceState.IDLE)
    for n in range(3):
        await node.publish(topics.device_telemetry(node.id, "a"), Telemetry(device="a", temperatures={
            "T0": Heater(actual=200.0 + n)}))
    seq = await node.event(JobStarted(device="a", job_id="no-such-job"))
    await node.event(JobStarted(device="a", job_id="no-such-job"), seq=seq)  # a replay
    await node.publish(topics.node_event(node.id), JobStarted(device="b", job_id="x"))  # without seq
    await node.session.publish_confirmed(topics.node_metrics(node.id), b"{broken")
    await node.publish(topics.node_metrics(node.id), HostMetrics(cpu_pct=1, mem_pct=2, disk_pct=3, load1=0.1,
                                                                 outbox_depth=42, outbox_dropped=7))

    anonymous = farm.http(hub, role=None)
    status, _ = await anonymous.call("GET", "/metrics")
    assert status == 401, "metrics are protected like the rest of the API"
    http = farm.http(hub, role="viewer")

    async def scraped() -> dict | None:
        status, body = await http.call("GET", "/metrics")
        assert status == 200
        found = samples(body.decode())
        reported = found.get(("farmhand_agent_outbox_depth", (("node", node.id),))) == 42
        confirmed = ("farmhand_event_ack_lag_seconds", (("node", node.id),)) in found
        return found if reported and confirmed else None

    found = await eventually(scraped, "the node's reported outbox depth and its events' confirmation", 5)
    assert found[("farmhand_ingest_messages_total", (("type", "telemetry"),))] == 3
    assert found[("farmhand_events_stored_total", ())] == 1
    assert found[("farmhand_events_duplicate_total", ())] == 1
    assert found[("farmhand_messages_malformed_total", ())] == 1
    assert found[("farmhand_messages_rejected_total", (("reason", "missing_seq"),))] == 1
    assert found[("farmhand_agent_outbox_dropped_total", (("node", node.id),))] == 7
    assert found[("farmhand_broker_connected", ())] == 1
    assert found[("farmhand_devices", (("state", "idle"),))] == 2
    assert found[("farmhand_devices_online", ())] == 2
    assert found[("farmhand_state_staleness_seconds_count", (("kind", "telemetry"),))] == 3
    assert found[("farmhand_event_acks_published_total", ())] >= 1
    assert ("farmhand_scheduler_pass_seconds_count", ()) in found
    latency = [k for k in found if k[0] == "farmhand_api_request_seconds_count"]
    assert any(dict(labels).get("route") == "/metrics" for _, labels in latency)


async def test_the_shipped_grafana_dashboard_charts_only_metrics_the_hub_has(farm: Farm) -> None:
    hub = await farm.hub()
    status, body = await farm.http(hub, role="viewer").call("GET", "/metrics")
    families = {family.name for family in text_string_to_metric_families(body.decode())}
    dashboard = (Path(__file__).resolve().parent.parent / "systemd" / "grafana-farmhand-hub.json").read_text()
    charted = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in re.findall(r"farmhand_[a-z_]+", dashboard)}
    assert charted and charted - {"farmhand_hub"} <= families, charted - families
