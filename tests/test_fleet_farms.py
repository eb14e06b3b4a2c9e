"""The benchmark's lean farm keeps the agents' delivery contract: an event counts as delivered only when
the hub confirms it, and what is not confirmed goes out again, so the hub stores every event once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fleet import printing_jobs
from bench.fleet_farms import LeanFarm
from hub.app import Hub
from hub.mqtt import Mqtt
from hub.store import Store

from .agent_support import wait_for
from .conftest import PrivateMosquitto
from .hubkit import hub_config


@pytest.mark.integration
async def test_the_lean_farm_resends_what_a_full_broker_dropped_and_the_hub_stores_each_event_once(
        tmp_path: Path) -> None:
    """The broker keeps at most 20 in flight and 30 queued for the hub and drops the rest, after
    acknowledging them to the farm: only the hub's confirmations empty the nodes."""
    broker = PrivateMosquitto(tmp_path, max_queued_messages=30, max_inflight_messages=20)
    broker.start()
    farm = LeanFarm(broker.url, "n", 6, 2, connections=2, window=10, replay_jitter_s=0.2, confirm_timeout_s=0.3)
    store = Store(tmp_path / "hub")
    farm.prepare(200, printing_jobs(store, {n.node_id: n.devices for n in farm.nodes}))
    store.close()
    farm.append(200)  # held while the farm was away
    hub = Hub(hub_config(tmp_path / "hub", broker.url))
    await hub.start()
    try:
        await farm.start()
        await wait_for(lambda: farm.pending() == 0, 60, "every node's events to be confirmed")
        assert hub.store is not None
        stored = {r[0]: (r[1], r[2], r[3]) for r in hub.store.db.execute(
            "SELECT sender, count(*), count(DISTINCT seq), min(seq) FROM events GROUP BY sender")}
        assert stored == {n.node_id: (200, 200, n.first_seq) for n in farm.nodes}
        assert hub._component(Mqtt).ingest.counts["events"] == 1200, "each event applied once"
        assert farm.replays > 0, "the broker dropped some, and they were sent again"
        progress = hub.store.db.execute("SELECT count(*) FROM jobs WHERE progress IS NOT NULL").fetchone()[0]
        assert progress == 12, "the events reached the jobs they belong to"
    finally:
        await farm.stop()
        await hub.stop()
        broker.stop()
