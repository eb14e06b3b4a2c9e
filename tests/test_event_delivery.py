"""Nothing lost between an agent's outbox and the hub's database, whatever the broker drops.

An event leaves an agent's outbox only when the hub confirms it stored it (protocol/README.md,
"Event delivery"); the broker's PUBACK is not enough, because a broker whose queue for the hub is
full acknowledges the publisher and drops the message.
"""

from __future__ import annotations

import asyncio

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.event_outbox import EventOutbox
from bench.fleet import printing_jobs
from farmhand.sim.fleet_node import SimulatedNode, start_all
from hub.app import Hub
from hub.mqtt import Mqtt
from hub.store import Store
from protocol import codec, topics
from protocol.messages import EventAck, JobStarted

from .agent_support import Listener, outbox_session, wait_for
from .conftest import PrivateMosquitto
from .hubkit import hub_config


def started(n: int) -> JobStarted:
    return JobStarted(device="p1", job_id=f"job-{n}")


def ack(seq: int) -> bytes:
    return codec.encode(codec.make("hub", EventAck(seq=seq)))


def test_a_confirmation_deletes_every_event_up_to_its_mark_and_nothing_else(tmp_path: Path) -> None:
    outbox = EventOutbox(tmp_path / "outbox.db", "n1")
    seqs = [outbox.append("t", started(n)) for n in range(5)]
    outbox.confirm_message(ack(seqs[2]))
    assert [r[0] for r in outbox.rows()] == seqs[3:] and outbox.pending() == 2
    outbox.confirm_message(ack(seqs[1]))  # an older confirmation, arriving late
    outbox.confirm_message(b"{not json")
    outbox.confirm_message(codec.encode(codec.make("hub", started(9))))
    assert outbox.pending() == 2 and outbox.malformed_acks == 2
    outbox.close()




@pytest.mark.integration
async def test_an_agent_whose_hub_never_confirms_deletes_nothing_and_its_bound_still_holds(
        private_mosquitto: PrivateMosquitto, tmp_path: Path) -> None:
    """The broker acknowledges every event; with no hub to confirm them, every one stays."""
    topic = topics.node_event("n1")
    outbox = EventOutbox(tmp_path / "outbox.db", "n1", max_messages=50, window=10, confirm_timeout_s=0.3,
                         replay_jitter_s=0)
    session = outbox_session(private_mosquitto.url, outbox)
    async with Listener(private_mosquitto.url, topic) as listener:
        session.start()
        outbox.start_sender(session)
        try:
            first = [outbox.append(topic, started(n)) for n in range(30)]
            await wait_for(lambda: outbox.replays >= 2, what="the unconfirmed window to go out again")
            heard = {e.seq for e in listener.envelopes(topic)}
            assert heard == set(first[:10]), "only a window of unconfirmed events is out at a time"
            assert outbox.pending() == 30 and outbox.sent == 0, "a PUBACK deletes nothing"

            with capture_logs() as logs:
                more = [outbox.append(topic, started(n)) for n in range(30, 70)]
            assert outbox.pending() == 50, "the outbox bound holds"
            assert [r[0] for r in outbox.rows()] == (first + more)[20:], "the oldest events went first"
            assert outbox.dropped_events == 20
            full = [e for e in logs if e["event"] == "spool_full_dropping_events"]
            # The first drop is an error naming the bound and the counts (then one line per thousand).
            assert full and full[0]["dropped_events"] == 1 and full[0]["max_messages"] == 50
        finally:
            await outbox.stop_sender()
            await session.stop()
            outbox.close()


async def _farm_delivers_everything(broker: PrivateMosquitto, tmp_path: Path, nodes: int, events: int,
                                    timeout: float, **node_options: float) -> tuple[Hub, list[SimulatedNode]]:
    """``nodes`` agents each holding ``events`` events reconnect together to a running hub; every event
    must be stored and confirmed (each outbox empties)."""
    farm = [SimulatedNode(broker.url, f"n{i:03d}", tmp_path / "agents", printers=2, **node_options)
            for i in range(nodes)]
    store = Store(tmp_path / "hub")
    jobs = printing_jobs(store, {n.node_id: n.devices for n in farm})
    store.close()
    for node in farm:
        node.spool(events, jobs[node.node_id])  # held while the farm was away from the broker
    hub = Hub(hub_config(tmp_path / "hub", broker.url))
    await hub.start()
    try:
        await start_all(farm)
        await wait_for(lambda: all(n.outbox.pending() == 0 for n in farm), timeout, "every outbox to be confirmed")
    except BaseException:
        await asyncio.gather(*(n.stop() for n in farm))
        await hub.stop()
        raise
    return hub, farm


async def _stop(hub: Hub, farm: list[SimulatedNode]) -> None:
    await asyncio.gather(*(n.stop() for n in farm))
    await hub.stop()


def _stored(hub: Hub) -> dict[str, tuple[int, int]]:
    assert hub.store is not None
    return {r[0]: (r[1], r[2]) for r in hub.store.db.execute(
        "SELECT sender, count(*), count(DISTINCT seq) FROM events GROUP BY sender")}


@pytest.mark.integration
@pytest.mark.timeout(600)  # 100,000 events through one process on a shared 2-core machine
async def test_a_reconnect_storm_stores_every_event_exactly_once(tmp_path: Path) -> None:
    broker = PrivateMosquitto(tmp_path)
    broker.start()
    try:
        hub, farm = await _farm_delivers_everything(broker, tmp_path, nodes=50, events=2000, timeout=540,
                                                    replay_jitter_s=1.0)
        try:
            assert _stored(hub) == {n.node_id: (2000, 2000) for n in farm}
            ingest = hub._component(Mqtt).ingest
            assert ingest.counts["events"] == 100_000, "each event applied once"
            assert all(n.outbox.sent == 2000 and n.outbox.dropped_events == 0 for n in farm)
            progress = hub.store.db.execute("SELECT count(*) FROM jobs WHERE progress IS NOT NULL").fetchone()[0]
            assert progress == 100, "the events reached the jobs they belong to"
        finally:
            await _stop(hub, farm)
    finally:
        broker.stop()


@pytest.mark.integration
async def test_a_broker_whose_queue_for_the_hub_overflows_loses_nothing(tmp_path: Path) -> None:
    """The broker keeps at most 20 in flight and 30 queued for the hub and drops the rest, after
    acknowledging them to the agents: the agents send what is not confirmed again."""
    broker = PrivateMosquitto(tmp_path, max_queued_messages=30, max_inflight_messages=20)
    broker.start()
    try:
        hub, farm = await _farm_delivers_everything(broker, tmp_path, nodes=5, events=1000, timeout=120,
                                                    replay_jitter_s=0.0, confirm_timeout_s=0.5)
        try:
            assert _stored(hub) == {n.node_id: (1000, 1000) for n in farm}
            assert sum(n.outbox.replays for n in farm) > 0, "the broker dropped some, and they were sent again"
            assert hub._component(Mqtt).rebirths.requested == 0, "a gap the node fills needs no rebirth"
        finally:
            await _stop(hub, farm)
    finally:
        broker.stop()
