"""Threshold rules on a real SQLite store, without a broker: a host metric must hold for its
``for_s`` before the alert is raised, the alert is open once however many passes see it, a
webhook that fails is retried until the event goes out, once, and e-mail goes through a real
SMTP server that demands STARTTLS and a login."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from hub.alerting.component import Alerting, AlertRules
from farmhand.certs import issue, make_ca
from hub.alerting.config import AlertingConfig
from hub.ops import raise_alert
from hub.fleet.registry import FleetState as Fleet  # the fleet's state, without its MQTT side
from hub.store import Store
from protocol.messages import HostMetrics, NodeState

from .alertkit import SmtpSink, WebhookSink


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def _no_mqtt(topic: str, payload: bytes) -> None:
    raise AssertionError("no MQTT channel is configured")


def _metrics(cpu_temp_c: float) -> HostMetrics:
    return HostMetrics(cpu_pct=10, mem_pct=20, disk_pct=30, load1=0.1, cpu_temp_c=cpu_temp_c)


async def test_a_host_metric_is_raised_after_its_delay_once_and_delivered_after_a_failed_try(tmp_path: Path) -> None:
    store = Store(tmp_path)
    fleet = Fleet(store, 10.0)
    fleet.node_state("pi-1", NodeState(online=True))
    clock = Clock()
    async with WebhookSink() as hook:
        hook.fail_next = 1
        config = AlertingConfig.model_validate({"webhooks": [{"url": hook.url}], "rules": [
            {"name": "pi-hot", "kind": "host_metric", "metric": "cpu_temp_c", "threshold": 80, "for_s": 30}]})
        alerting = Alerting(store, fleet, config, "hub", _no_mqtt, clock=clock)
        try:
            fleet.metrics("pi-1", _metrics(85.0))
            await alerting.check()
            clock.t += 29
            await alerting.check()
            assert alerting.book.history() == []  # hot, but not for 30 s yet
            clock.t += 2
            await alerting.check()  # raised; its webhook answers 500 this time
            [alert] = alerting.book.history()
            assert alert.subject == "pi-1" and alert.value == 85.0 and "cpu_temp_c 85" in alert.message
            assert [(d.state, d.attempts) for d in alert.deliveries] == [("pending", 1)]
            for _ in range(3):
                clock.t += 5
                await alerting.check()
            assert len(alerting.book.history()) == 1  # still the one alert
            assert hook.events(alert.id) == ["raised"]

            fleet.metrics("pi-1", _metrics(60.0))
            await alerting.check()
            await alerting.check()
            [alert] = alerting.book.history()
            assert alert.resolved_at is not None and hook.events(alert.id) == ["raised", "resolved"]

            # A rule taken away resolves what it raised, and bad rules are refused.
            fleet.metrics("pi-1", _metrics(90.0))
            alerting.set_rules(AlertRules.model_validate({"rules": [
                {"name": "pi-hot", "kind": "host_metric", "metric": "cpu_temp_c", "threshold": 80}]}))
            await alerting.check()
            assert len([a for a in alerting.book.history() if a.resolved_at is None]) == 1
            alerting.set_rules(AlertRules(rules=[]))
            await alerting.check()
            assert all(a.resolved_at for a in alerting.book.history())
            with pytest.raises(ValueError, match="metric"):
                AlertRules.model_validate({"rules": [{"name": "x", "kind": "host_metric", "threshold": 1}]})
        finally:
            await alerting.stop()
            store.close()



async def test_a_render_task_that_delivers_no_frame_for_too_long_is_stalled(tmp_path: Path) -> None:
    store = Store(tmp_path)
    clock = Clock()
    config = AlertingConfig.model_validate({"rules": [{"name": "stall", "kind": "render_stalled", "threshold": 60}]})
    alerting = Alerting(store, Fleet(store, 10.0), config, "hub", _no_mqtt, clock=clock)
    with store.transaction() as db:
        db.execute("INSERT INTO files (sha256, name, size, created_at) VALUES ('b', 'scene.blend', 1, 'now')")
        db.execute("INSERT INTO render_jobs (name, blend_sha256, frame_start, frame_end, engine, cycles_device,"
                   " quality, samples, resolution_pct, denoise, file_format, preview, max_attempts,"
                   " max_node_failures, timeout_s, state, created_at) VALUES ('scene', 'b', 1, 50, 'CYCLES', 'CPU',"
                   " 'final', 64, 100, 0, 'PNG', 0, 3, 2, 3600, 'rendering', 'now')")
        db.execute("INSERT INTO render_tasks (job_id, kind, frame_start, frame_end, samples, resolution_pct, state,"
                   " node, device, frames_done) VALUES (1, 'frames', 1, 50, 64, 100, 'running', 'gpu-1', 'blender', 3)")
    try:
        await alerting.check()
        clock.t += 50
        store.db.execute("UPDATE render_tasks SET frames_done = 4")  # a frame came in: not stalled
        await alerting.check()
        clock.t += 50
        await alerting.check()
        assert alerting.book.history() == []
        clock.t += 20
        await alerting.check()
        [alert] = alerting.book.history()
        assert alert.subject == "render-task/1" and "gpu-1/blender" in alert.message and alert.resolved_at is None
        store.db.execute("UPDATE render_tasks SET frames_done = 5")
        await alerting.check()
        assert alerting.book.history()[0].resolved_at is not None
    finally:
        await alerting.stop()
        store.close()


async def test_a_channel_added_later_is_sent_new_alerts_not_the_farms_history(tmp_path: Path) -> None:
    store = Store(tmp_path)
    fleet = Fleet(store, 10.0)
    raise_alert(store.db, "low_stock", "spool/1", "an old alert")
    store.db.execute("UPDATE alerts SET created_at = '2026-01-01T00:00:00.000+00:00'")  # raised before the channel
    async with WebhookSink() as hook:
        config = AlertingConfig.model_validate({"webhooks": [{"url": hook.url}]})
        alerting = Alerting(store, fleet, config, "hub", _no_mqtt)
        try:
            await alerting.check()
            raise_alert(store.db, "low_stock", "spool/2", "a new alert")
            await alerting.check()
            assert [body["alert"]["subject"] for _, _, body in hook.received] == ["spool/2"]
        finally:
            await alerting.stop()
            store.close()


async def test_email_goes_over_starttls_with_a_login_and_a_refusal_is_recorded_not_raised(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(*issue(tmp_path / "ca", "smtp", ["127.0.0.1"]))
    store = Store(tmp_path)
    async with SmtpSink(tls=served, users={"farm": "right-password"}) as smtp:  # STARTTLS and a login required
        def alerting(**email: object) -> Alerting:
            config = {"host": "127.0.0.1", "port": smtp.port, "to": ["ops@example.org"], **email}
            return Alerting(store, Fleet(store, 10.0), AlertingConfig.model_validate({"email": config}), "hub",
                            _no_mqtt, clock=Clock())

        login = {"starttls": True, "ca_file": str(ca), "username": "farm"}
        tries = [(alerting(), "refused sending: 530 Must issue a STARTTLS command first"),
                 (alerting(**{**login, "ca_file": None, "password": "right-password"}), "CERTIFICATE_VERIFY_FAILED"),
                 (alerting(**login, password="wrong-password"),
                  "refused logging in as 'farm': 535 5.7.8 Authentication credentials invalid")]
        await tries[0][0].check()  # the channel's first pass: alerts from here on are mailed
        raise_alert(store.db, "low_stock", "spool/1", "PLA black: 80 g left")
        try:
            for n, (channel, error) in enumerate(tries, start=1):
                with capture_logs() as logged:
                    await channel.check()
                [delivery] = channel.book.history()[0].deliveries
                assert (delivery.state, delivery.attempts) == ("pending", n) and error in str(delivery.last_error)
                assert [e["error"] for e in logged if e["event"] == "alert_delivery_failed"] == [
                    delivery.last_error.split(": ", 1)[1]]
            assert smtp.messages == [] and smtp.logins == [("PLAIN", "farm", False), ("LOGIN", "farm", False)]

            right = alerting(**login, password="right-password")
            await right.check()
            await right.check()
            [message] = smtp.messages
            assert message["Subject"] == "[hub] WARNING: spool/1 (low_stock)" and "80 g left" in message.get_payload()
            assert smtp.logins[-1] == ("PLAIN", "farm", True)
            assert [(d.state, d.attempts) for d in right.book.history()[0].deliveries] == [("sent", 4)]
        finally:
            store.close()


def test_an_email_login_needs_starttls_and_both_its_parts() -> None:
    for email, error in [({"username": "farm", "password": "x"}, "needs starttls"),
                         ({"starttls": True, "username": "farm"}, "go together"),
                         ({"ca_file": "/etc/ca.crt"}, "ca_file is for starttls")]:
        with pytest.raises(ValueError, match=error):
            AlertingConfig.model_validate({"email": {"host": "smtp", "to": ["ops@example.org"], **email}})
