"""Threshold alerts against a real agent and the virtual printer on a private Mosquitto: a heater
off its target, a device gone silent, a print running past its estimate and an agent's outbox that
the hub's confirmations do not reach are each raised once,
notified once per channel (signed webhook, MQTT topic, e-mail through a real SMTP server), resolved
when the condition clears, and acknowledged by an operator."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.node import Agent
from hub.app import Hub
from hub.export.signing import verify
from protocol import topics

from .agent_support import Listener
from .alertkit import SmtpSink, WebhookSink
from .brokerkit import locked_broker, login
from .farm import Api, agent_config, hub_config, start_printer
from .hubkit import eventually

pytestmark = pytest.mark.integration

SECRET = "webhook-secret-0123456789"
TOPIC = topics.hub_alerts()  # where the shipped broker ACL lets the hub write and scripts read
DEVICE = "mk3s-1"


class AlertFarm:
    def __init__(self, hub: Hub, agent: Agent, api: Api, printer: Any, config: Any) -> None:
        self.hub, self.agent, self.api, self.printer, self.agent_config = hub, agent, api, printer, config
        self.device = f"{config.node_id}/{DEVICE}"

    async def call(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        async with self.api.http.request(method, f"{self.api.base}{path}", **kw) as r:
            body = await r.json()
            assert r.status == status, body
            return body

    async def alerts(self, rule: str) -> list[dict[str, Any]]:
        items = (await self.call("GET", "/api/v1/alerts/history"))["items"]
        return [a for a in items if a["rule"] == rule]


@contextlib.asynccontextmanager
async def alert_farm(tmp: Path, broker: str, rules: list[dict[str, Any]], speed_factor: float,
                     webhook: str, smtp_port: int, agent_broker: str | None = None,
                     node_id: str | None = None) -> AsyncIterator[AlertFarm]:
    """``agent_broker`` and ``node_id``: the agent's own login, on a broker that tells its clients apart."""
    printer = await start_printer(tmp, speed_factor=speed_factor)
    hub = Hub(hub_config(tmp / "hub", broker, alerting={
        "interval_s": 0.25, "rules": rules, "webhooks": [{"url": webhook, "secret": SECRET}], "mqtt_topic": TOPIC,
        "email": {"host": "127.0.0.1", "port": smtp_port, "sender": "farm@example.org", "to": ["ops@example.org"]}}))
    await hub.start()
    config = agent_config(tmp / "agent", agent_broker or broker, {DEVICE: printer.link}, node_id,
                          metrics_interval_s=0.25)
    agent = Agent(config)
    await agent.start()
    api = Api(hub.http_url)
    farm = AlertFarm(hub, agent, api, printer, config)
    try:
        await eventually(lambda: hub.fleet.device(config.node_id, DEVICE) is not None
                         and hub.fleet.device(config.node_id, DEVICE).state == "idle", "the printer to be idle", 30)
        yield farm
    finally:
        await api.close()
        await hub.stop()
        await farm.agent.stop()
        await printer.stop()


async def _raised_then_resolved(farm: AlertFarm, rule: str, timeout: float = 30) -> dict[str, Any]:
    [raised] = await eventually(lambda: farm.alerts(rule), f"a {rule} alert", timeout)
    assert raised["resolved_at"] is None

    async def resolved() -> Any:
        [a] = await farm.alerts(rule)
        return a if a["resolved_at"] else None
    return await eventually(resolved, f"the {rule} alert to resolve", timeout)


async def _notified_once_each(farm: AlertFarm, alert: dict[str, Any], hook: WebhookSink, mqtt: Listener,
                              smtp: SmtpSink | None) -> None:
    """Raised and resolved went out once on every channel, and stay once after more passes."""
    def delivered() -> bool:
        return hook.events(alert["id"]) == ["raised", "resolved"] and len(
            [p for t, p in mqtt.raw if t == TOPIC and json.loads(p)["alert"]["id"] == alert["id"]]) == 2
    await eventually(delivered, "both events on the webhook and the MQTT topic")
    passes = farm.hub.alerting.passes
    await eventually(lambda: farm.hub.alerting.passes >= passes + 4, "four more alerting passes")
    assert hook.events(alert["id"]) == ["raised", "resolved"]
    for headers, raw, body in hook.received:
        verify(SECRET, headers["X-Farmhand-Signature"], raw)  # signed as the event export signs
        assert body["hub"] == "test"
    events = [json.loads(p)["event"] for t, p in mqtt.raw if t == TOPIC and json.loads(p)["alert"]["id"] == alert["id"]]
    assert events == ["raised", "resolved"]
    if smtp is not None:
        subjects = [m["Subject"] for m in smtp.messages if alert["subject"] in m["Subject"]]
        assert len(subjects) == 2 and "WARNING" in subjects[0] and "RESOLVED" in subjects[1], subjects
    record = await farm.call("GET", "/api/v1/alerts/history")
    mine = next(a for a in record["items"] if a["id"] == alert["id"])
    assert {(d["channel"], d["event"], d["state"]) for d in mine["deliveries"]} == {
        (c, e, "sent") for c in ("webhook:0", "mqtt", "email") for e in ("raised", "resolved")}


async def test_a_heater_off_its_target_is_raised_notified_resolved_and_acknowledged(
        private_mosquitto: Any, tmp_path: Path) -> None:
    rules = [{"name": "nozzle", "kind": "heater_off_target", "heater": "T0", "threshold": 15, "for_s": 1.0}]
    async with WebhookSink() as hook, SmtpSink() as smtp, Listener(private_mosquitto.url, TOPIC) as mqtt, \
            alert_farm(tmp_path, private_mosquitto.url, rules, 10.0, hook.url, smtp.port) as farm:
        node, dev = farm.device.split("/")
        await farm.call("POST", f"/api/v1/devices/{node}/{dev}/gcode", 202, json={"lines": ["M104 S220"]})
        alert = await _raised_then_resolved(farm, "nozzle")
        assert alert["subject"] == f"{farm.device}/T0" and "target 220" in alert["message"]
        assert alert["severity"] == "warning" and alert["kind"] == "threshold"
        await _notified_once_each(farm, alert, hook, mqtt, smtp)
        assert farm.printer.temperatures["T0"][0] > 205  # it did reach its target: that is what resolved it

        acked = await farm.call("POST", f"/api/v1/alerts/{alert['id']}/ack")
        assert acked["acknowledged_by"] == "test-admin" and acked["acknowledged_at"]
        again = await farm.call("POST", f"/api/v1/alerts/{alert['id']}/ack")
        assert again["acknowledged_at"] == acked["acknowledged_at"]
        assert (await farm.call("POST", "/api/v1/alerts/999/ack", status=404))["status"] == 404


async def test_a_silent_printer_is_raised_and_resolved_when_its_agent_is_back(
        private_mosquitto: Any, tmp_path: Path) -> None:
    rules = [{"name": "quiet", "kind": "silence", "threshold": 2.0, "severity": "critical"}]
    async with WebhookSink() as hook, SmtpSink() as smtp, Listener(private_mosquitto.url, TOPIC) as mqtt, \
            alert_farm(tmp_path, private_mosquitto.url, rules, 50.0, hook.url, smtp.port) as farm:
        passes = farm.hub.alerting.passes
        await eventually(lambda: farm.hub.alerting.passes >= passes + 12, "three seconds of alerting passes")
        assert await farm.alerts("quiet") == []  # telemetry every 0.5 s: never silent for 2 s
        await farm.agent.stop()
        [raised] = await eventually(lambda: farm.alerts("quiet"), "a silence alert", 20)
        assert raised["subject"] == farm.device and raised["severity"] == "critical"
        farm.agent = Agent(farm.agent_config)
        await farm.agent.start()
        alert = await _raised_then_resolved(farm, "quiet")
        await _notified_once_each(farm, alert, hook, mqtt, None)
        assert any("CRITICAL" in m["Subject"] for m in smtp.messages)


async def test_a_print_running_past_its_estimate_is_raised_and_resolved_when_it_ends(
        private_mosquitto: Any, tmp_path: Path) -> None:
    rules = [{"name": "overrun", "kind": "print_overrun", "threshold": 40}]
    # About 5 s of moves by the G-code's estimate; the printer runs at half speed, so they take ~10 s.
    gcode = "G90\nG92 X0 Y0 Z0\n" + "G1 X60 F3000\nG1 X0 F3000\n" * 2
    async with WebhookSink() as hook, SmtpSink() as smtp, Listener(private_mosquitto.url, TOPIC) as mqtt, \
            alert_farm(tmp_path, private_mosquitto.url, rules, 0.5, hook.url, smtp.port) as farm:
        sha = await farm.api.upload(gcode)
        job = (await farm.call("POST", "/api/v1/print-jobs", 201, json={"file_sha256": sha}))["job"]  # analysed
        alert = await _raised_then_resolved(farm, "overrun", timeout=60)
        assert alert["subject"] == f"job/{job['id']}" and "past its estimate" in alert["message"]
        done = await farm.api.wait_job(job["id"], {"completed", "failed"}, timeout=30)
        assert done["state"] == "completed"
        await _notified_once_each(farm, alert, hook, mqtt, smtp)


async def test_an_agent_whose_events_are_not_confirmed_raises_its_outbox_depth(tmp_path: Path) -> None:
    """The broker refuses the hub's confirmations (a deny line in its ACL): the hub is up and stores the agent's
    events, but the agent never hears so, and its outbox grows until the line is gone."""
    rules = [{"name": "backlog", "kind": "host_metric", "metric": "outbox_depth", "threshold": 3, "for_s": 0.5}]
    with locked_broker(tmp_path) as broker:
        acl = tmp_path / "farmhand.acl"
        shipped = acl.read_text()
        acl.write_text(shipped.replace("user hub\n", f"user hub\ntopic deny {topics.node_ack('+')}\n"))
        broker.reload()
        async with WebhookSink() as hook, SmtpSink() as smtp, Listener(login(broker, "hub"), TOPIC) as mqtt, \
                alert_farm(tmp_path, login(broker, "hub"), rules, 50.0, hook.url, smtp.port,
                           agent_broker=login(broker, "pi-1"), node_id="pi-1") as farm:
            gcode = f"/api/v1/devices/{farm.device}/gcode"
            for n in range(5):  # each command's answer is an event in the agent's outbox
                await farm.call("POST", gcode, 202, json={"lines": [f"M117 line {n}"]})
            [raised] = await eventually(lambda: farm.alerts("backlog"), "an outbox depth alert", 20)
            assert raised["subject"] == "pi-1" and raised["value"] >= 4 and "outbox_depth" in raised["message"]
            assert farm.agent.outbox.pending() >= 4 and not raised["resolved_at"]

            acl.write_text(shipped)
            broker.reload()
            await farm.call("POST", gcode, 202, json={"lines": ["M117 confirmed"]})  # its mark covers the rest
            alert = await _raised_then_resolved(farm, "backlog")
            assert farm.agent.outbox.pending() == 0
            await _notified_once_each(farm, alert, hook, mqtt, smtp)
