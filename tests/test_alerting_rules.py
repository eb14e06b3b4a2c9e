"""Threshold rules on a real SQLite store, without a broker: a host metric must hold for its
``for_s`` before the alert is raised, the alert is open once however many passes see it, and a
webhook that fails is retried until the event goes out, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.alerting.component import Alerting, AlertRules
from hub.alerting.config import AlertingConfig
from hub.alerts import raise_alert
from hub.fleet import Fleet
from hub.store import Store
from protocol.messages import HostMetrics, NodeState

from .alertkit import WebhookSink


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
