"""The outbox: events persist before append returns, go out in order, and leave only on the hub's confirmation
(tests/test_event_delivery.py has the hub in the loop)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from agent.event_outbox import EventOutbox, OutboxLocked
from protocol import codec
from protocol.messages import CommandAck, ConsoleOutput, JobCompleted, JobProgress, JobStarted, RenderTaskCompleted

from .agent_support import Listener, drop_connection, outbox_session, wait_for


def started(n: int) -> JobStarted:
    return JobStarted(device="p1", job_id=f"job-{n}")


def progress(n: int) -> JobProgress:
    return JobProgress(device="p1", job_id="job", progress=n / 100)


def kinds(spool: EventOutbox) -> list[str]:
    return [codec.decode(payload).body.type for _, _, payload in spool.rows()]


def test_a_fresh_spool_numbers_from_unix_milliseconds_and_reopening_continues(tmp_path: Path) -> None:
    before = int(time.time() * 1000)
    spool = EventOutbox(tmp_path / "spool.db", "n1")
    first = spool.append("t", started(1))
    assert before <= first <= int(time.time() * 1000)
    assert spool.append("t", started(2)) == first + 1
    spool.close()

    spool = EventOutbox(tmp_path / "spool.db", "n1")
    assert spool.pending() == 2
    assert spool.append("t", started(3)) == first + 2
    # The numbers live in the payload the hub de-duplicates on.
    assert [codec.decode(p).seq for _, _, p in spool.rows()] == [first, first + 1, first + 2]
    assert {codec.decode(p).sender for _, _, p in spool.rows()} == {"n1"}
    spool.close()


def test_numbers_are_never_reused_even_after_every_row_is_gone(tmp_path: Path) -> None:
    spool = EventOutbox(tmp_path / "spool.db", "n1")
    last = spool.append("t", started(1))
    spool.db.execute("DELETE FROM spool")  # as if the broker had acknowledged everything
    spool.close()
    spool = EventOutbox(tmp_path / "spool.db", "n1")
    assert spool.append("t", started(2)) == last + 1
    spool.close()


def test_the_append_is_on_disk_when_it_returns(tmp_path: Path) -> None:
    spool = EventOutbox(tmp_path / "spool.db", "n1")
    seq = spool.append("farmhand/v1/node/n1/event", started(7))
    # Read it back from a copy made by SQLite's backup API, as another process would.
    copy = sqlite3.connect(tmp_path / "copy.db")
    spool.db.backup(copy)
    assert copy.execute("SELECT seq, topic FROM spool").fetchall() == [(seq, "farmhand/v1/node/n1/event")]
    copy.close()
    spool.close()


def test_an_event_over_the_payload_limit_is_refused_and_never_stored(tmp_path: Path) -> None:
    """Stored, it would go to a broker that refuses it, again after every reconnect."""
    spool = EventOutbox(tmp_path / "spool.db", "n1")
    lines = ["x" * 255] * 500  # each within the line bound, together still under the limit
    spool.append("farmhand/v1/node/n1/event", ConsoleOutput(device="p1", command_id="c1", lines=lines))
    huge = RenderTaskCompleted(device="b1", task_id="t1", frames=list(range(-1_000_000, 1_000_000, 20)),
                               duration_s=1.0)
    with pytest.raises(codec.PayloadTooLarge, match="render_task_completed"):
        spool.append("farmhand/v1/node/n1/event", huge)
    assert spool.pending() == 1 and kinds(spool) == ["console_output"]
    spool.close()


def test_callers_bookkeeping_and_the_event_commit_together(tmp_path: Path) -> None:
    spool = EventOutbox(tmp_path / "spool.db", "n1")
    spool.db.execute("CREATE TABLE answers (id TEXT)")

    def broken(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO answers VALUES ('a')")
        raise RuntimeError("disk trouble")

    with pytest.raises(RuntimeError):
        spool.append("t", CommandAck(command_id="a", status="done"), before_commit=broken)
    assert spool.pending() == 0 and spool.rows() == []
    assert spool.db.execute("SELECT count(*) FROM answers").fetchone()[0] == 0
    seq = spool.append("t", CommandAck(command_id="a", status="done"),
                       before_commit=lambda db: db.execute("INSERT INTO answers VALUES ('a')"))
    assert [r[0] for r in spool.rows()] == [seq]
    spool.close()


def test_full_spool_drops_superseded_progress_before_any_event(tmp_path: Path) -> None:
    spool = EventOutbox(tmp_path / "spool.db", "n1", max_messages=4)
    spool.append("t", started(1))
    spool.append("t", progress(10))
    spool.append("t", progress(20))
    spool.append("t", JobCompleted(device="p1", job_id="job-1", duration_s=1, lines=3))
    spool.append("t", started(2))
    spool.append("t", started(3))
    assert kinds(spool) == ["job_started", "job_completed", "job_started", "job_started"]
    assert spool.dropped_superseded == 2 and spool.dropped_events == 0
    spool.close()


def test_a_spool_full_of_events_drops_the_oldest_and_counts_it(tmp_path: Path) -> None:
    spool = EventOutbox(tmp_path / "spool.db", "n1", max_messages=3)
    seqs = [spool.append("t", started(n)) for n in range(5)]
    assert [r[0] for r in spool.rows()] == seqs[2:]
    assert spool.dropped_events == 2 and spool.pending() == 3
    spool.close()
    # The count of rows is the file's, not a guess, after a reopen.
    assert EventOutbox(tmp_path / "spool.db", "n1", max_messages=3).pending() == 3


def test_two_agents_cannot_share_one_spool(tmp_path: Path) -> None:
    spool = EventOutbox(tmp_path / "spool.db", "n1")
    with pytest.raises(OutboxLocked, match="in use by another agent process"):
        EventOutbox(tmp_path / "spool.db", "n1")
    spool.close()


# --------------------------------------------------------------------------- with a broker




def _seqs(listener: Listener, topic: str) -> list[int]:
    return [env.seq for env in listener.envelopes(topic)]


@pytest.mark.integration
async def test_events_go_out_in_order_a_window_at_a_time_and_leave_on_confirmation(mosquitto_url: str,
                                                                                  tmp_path: Path) -> None:
    topic = f"farmhand/v1/node/{uuid.uuid4().hex[:12]}/event"
    spool = EventOutbox(tmp_path / "spool.db", "n1", window=16)
    session = outbox_session(mosquitto_url, spool)
    async with Listener(mosquitto_url, topic) as listener:
        appended = [spool.append(topic, started(n)) for n in range(150)]
        session.start()
        spool.start_sender(session)
        try:
            heard = 0
            while heard < 150:
                expected = min(150, heard + 16)
                await wait_for(lambda: len(listener.messages) >= expected, what=f"{expected} events")
                await asyncio.sleep(0.1)
                assert len(listener.messages) == expected, "never more than a window unconfirmed"
                heard = expected
                spool.confirm(_seqs(listener, topic)[-1])  # as the hub confirms what it stored
            assert _seqs(listener, topic) == appended
            spool.confirm(appended[-1])
            assert spool.pending() == 0 and spool.sent == 150
        finally:
            await spool.stop_sender()
            await session.stop()
            spool.close()


@pytest.mark.integration
async def test_events_spooled_before_a_restart_are_sent_after_it(mosquitto_url: str, tmp_path: Path) -> None:
    topic = f"farmhand/v1/node/{uuid.uuid4().hex[:12]}/event"
    spool = EventOutbox(tmp_path / "spool.db", "n1")
    appended = [spool.append(topic, started(n)) for n in range(5)]
    spool.close()  # the agent stops (or dies) before it ever connects

    spool = EventOutbox(tmp_path / "spool.db", "n1")
    session = outbox_session(mosquitto_url, spool)
    async with Listener(mosquitto_url, topic) as listener:
        session.start()
        spool.start_sender(session)
        try:
            await wait_for(lambda: len(listener.messages) >= 5, what="the replayed events")
            assert _seqs(listener, topic) == appended
            assert [b.job_id for b in listener.bodies(topic)] == [f"job-{n}" for n in range(5)]
        finally:
            await spool.stop_sender()
            await session.stop()
            spool.close()


@pytest.mark.integration
async def test_unconfirmed_rows_are_sent_again_after_a_lost_connection(private_mosquitto, tmp_path: Path) -> None:
    topic = f"farmhand/v1/node/{uuid.uuid4().hex[:12]}/event"
    spool = EventOutbox(tmp_path / "spool.db", "n1", replay_jitter_s=0.2)
    session = outbox_session(private_mosquitto.url, spool)
    async with Listener(private_mosquitto.url, topic) as listener:
        session.start()
        spool.start_sender(session)
        try:
            await session.wait_connected(10)
            appended = [spool.append(topic, started(n)) for n in range(5)]
            await wait_for(lambda: len(listener.messages) == 5, what="five events")
            spool.confirm(appended[1])
            drop_connection(session)
            await wait_for(lambda: len(listener.messages) == 8, what="the three unconfirmed ones again")
            assert _seqs(listener, topic) == appended + appended[2:]
            assert spool.pending() == 3
        finally:
            await spool.stop_sender()
            await session.stop()
            spool.close()
