"""After a node reconnects, the hub's jobs match what its devices say they run.

A scripted node plays the agent: its birth says what each device runs, as a
real agent's does (tests/test_agent_node.py shows that side). The failure this
guards against: an agent killed mid-print came back with its printer idle and
the hub kept the job "printing" forever, its queue stalled behind it.
"""

from __future__ import annotations

import asyncio

import pytest

from protocol.messages import (
    CommandAck,
    DeviceJob,
    DeviceState,
    JobCompleted,
    JobProgress,
    StartJob,
)

from .hubkit import Farm, eventually, farm, printing_job  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

DEVICE = "mk3s-1"


def idle() -> list[DeviceJob]:
    return [DeviceJob(device=DEVICE, state=DeviceState.IDLE)]


async def test_a_job_its_device_no_longer_runs_is_interrupted_and_queued_again(farm: Farm) -> None:
    http, node, job_id = await printing_job(farm)
    await node.event(JobProgress(device=DEVICE, job_id=str(job_id), progress=0.32))
    await http.wait_state(job_id, "printing")

    await node.birth(jobs=idle())  # the agent restarted: its printer is idle

    start = await node.command()
    assert isinstance(start, StartJob) and start.job_id == str(job_id) and start.command_id == f"start-{job_id}-1"
    job = await http.job(job_id)
    assert job["state"] == "assigned" and job["attempt"] == 1
    assert "interrupted" in job["error"] and "reports idle" in job["error"]
    assert (await http.health())["counters"]["ingest"]["jobs_interrupted"] == 1


async def test_a_job_that_asked_not_to_be_requeued_stays_interrupted_with_its_progress(farm: Farm) -> None:
    http, node, job_id = await printing_job(farm, requeue_interrupted=False)
    await node.event(JobProgress(device=DEVICE, job_id=str(job_id), progress=0.32))
    await eventually(lambda: _progress(http, job_id, 0.32), "progress")

    await node.birth(jobs=idle())

    job = await http.wait_state(job_id, "interrupted")
    assert job["progress"] == 0.32 and job["finished_at"] is not None


async def test_a_printer_still_printing_a_job_it_cannot_name_keeps_it(farm: Farm) -> None:
    """The printer's own SD print goes on while the agent restarted: not an interruption."""
    http, node, job_id = await printing_job(farm)
    await node.birth(DeviceState.PRINTING, jobs=[DeviceJob(device=DEVICE, state=DeviceState.PRINTING)])
    await node.event(JobProgress(device=DEVICE, job_id=str(job_id), progress=0.5))
    await eventually(lambda: _progress(http, job_id, 0.5), "progress after the birth")
    assert (await http.job(job_id))["state"] == "printing"


async def test_a_job_the_hub_does_not_know_is_shown_and_raises_an_alert(farm: Farm) -> None:
    hub = await farm.hub()
    http = farm.http(hub)
    node = await farm.node(DEVICE)
    await node.birth(DeviceState.PRINTING, jobs=[DeviceJob(device=DEVICE, state=DeviceState.PRINTING,
                                                             job_id="9999", progress=0.4)])
    await node.status(DEVICE, DeviceState.PRINTING, job_id="9999", progress=0.4)

    async def alerted() -> list[dict]:
        items = (await http.call("GET", "/api/v1/alerts"))[1]["items"]
        return [a for a in items if a["kind"] == "unknown_job" and a["subject"] == f"{node.id}/{DEVICE}"]

    (alert,) = await eventually(alerted, "the alert")
    assert "9999" in alert["message"]

    async def shown() -> bool:  # the status follows the birth; the broker's PUBACK is not the hub's commit
        return (await http.devices())[f"{node.id}/{DEVICE}"]["job_id"] == "9999"

    await eventually(shown, "the device showing the job it reports")

    received = (await http.health())["counters"]["ingest"]["received"]
    await node.birth(DeviceState.PRINTING, jobs=[DeviceJob(device=DEVICE, state=DeviceState.PRINTING,
                                                             job_id="9999", progress=0.4)])

    async def born_again() -> bool:  # the birth, then its device's status
        return (await http.health())["counters"]["ingest"]["received"] >= received + 2

    await eventually(born_again, "the second birth taken in")
    assert len(await alerted()) == 1, "born again, the node's unknown job is still one open alert"


async def test_a_birth_waits_for_the_events_spooled_before_it(farm: Farm) -> None:
    """A job that completed while the broker was away arrives completed, not interrupted and printed again."""
    http, node, job_id = await printing_job(farm)
    await node.birth(jobs=idle(), events_unsent=1)
    await asyncio.sleep(0.5)
    assert (await http.job(job_id))["state"] == "printing", "compared before the spooled events were applied"
    await node.event(JobCompleted(device=DEVICE, job_id=str(job_id), duration_s=60, lines=2))

    job = await http.wait_state(job_id, "completed")
    assert job["attempt"] == 0 and (await http.health())["counters"]["ingest"]["jobs_interrupted"] == 0


async def test_a_node_away_past_the_deadline_has_its_jobs_interrupted(farm: Farm) -> None:
    hub = await farm.hub(jobs={"offline_deadline_s": 1.0, "requeue_interrupted": False})
    http = farm.http(hub)
    node = await farm.node(DEVICE)
    job = await http.submit(await http.upload(b"G28\n"), device=f"{node.id}/{DEVICE}")
    start = await node.command()
    await node.event(CommandAck(command_id=start.command_id, status="accepted"))
    await http.wait_state(job["id"], "printing")

    await node.die()

    ended = await http.wait_state(job["id"], "interrupted")
    assert "offline for more than 1 s" in ended["error"]


async def test_a_cancel_the_device_rejects_as_not_running_ends_the_job(farm: Farm) -> None:
    http, node, job_id = await printing_job(farm)
    await node.status(DEVICE, DeviceState.IDLE)  # whatever it ran, it runs nothing now
    await http.call("POST", f"/api/v1/jobs/{job_id}/cancel")
    cancel = await node.command()
    await node.event(CommandAck(command_id=cancel.command_id, status="rejected",
                                reason=f"device {DEVICE} is not running job {job_id} (current: none)"))

    job = await http.wait_state(job_id, "cancelled")
    assert "not running" in job["error"]


async def test_a_gap_in_a_nodes_events_asks_it_to_be_born_again(farm: Farm) -> None:
    http, node, job_id = await printing_job(farm)
    node.seq += 5  # five events lost on the way
    await node.event(JobProgress(device=DEVICE, job_id=str(job_id), progress=0.6))

    await eventually(lambda: node.rebirths, "a rebirth request")
    assert "seq gap" in node.rebirths[0].reason


async def test_a_birth_older_than_the_events_applied_asks_for_a_fresh_one(farm: Farm) -> None:
    """A hub restored from an empty database may apply a node's newer events before the node's retained birth:
    that birth is stale and is not acted on, but the hub must ask for a fresh one, or it never learns what
    the node runs (the node stays connected to the broker and has no reason to be born again)."""
    http, node, job_id = await printing_job(farm)
    await node.event(JobProgress(device=DEVICE, job_id=str(job_id), progress=0.4))
    node.seq -= 2  # a birth from before the last two events
    await node.birth(jobs=idle())
    node.seq += 2

    await eventually(lambda: node.rebirths, "a rebirth request")
    assert "birth older than" in node.rebirths[0].reason
    assert (await http.job(job_id))["state"] == "printing", "a stale birth interrupts nothing"


async def test_a_status_of_a_device_the_birth_did_not_list_asks_for_a_rebirth(farm: Farm) -> None:
    hub = await farm.hub()
    farm.http(hub)
    node = await farm.node(DEVICE)
    await node.status("xl-2", DeviceState.IDLE)

    await eventually(lambda: node.rebirths, "a rebirth request")
    assert "xl-2" in node.rebirths[0].reason


async def _progress(http, job_id: int, value: float) -> bool:  # type: ignore[no-untyped-def]
    return (await http.job(job_id))["progress"] == value
