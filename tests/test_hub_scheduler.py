"""The FIFO scheduler over a real broker, with a scripted node playing the agent's side.

On the machine's shared Mosquitto jobs are pinned to this test's devices, so
another test's idle printers can never take them; tests in which the scheduler
must choose between devices use the hub's embedded broker instead.
"""

from __future__ import annotations

from typing import Any

import pytest

from protocol.messages import (
    CancelJob,
    CommandAck,
    JobCompleted,
    JobFailed,
    JobProgress,
    JobStarted,
    RenderCapabilities,
    StartJob,
)

from .hubkit import Farm, Http, ScriptedNode, eventually, farm, isolated_farm  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]

GCODE = b"G28\nG1 X10 Y10 F3000\nG1 X20\n"


async def setup(farm: Farm, *devices: str, render: RenderCapabilities | None = None,
                **hub_config: Any) -> tuple[Http, ScriptedNode, str]:
    hub = await farm.hub(**hub_config)
    http = farm.http(hub)
    node = await farm.node(*devices, render=render)
    await eventually(lambda: _knows(http, node), "the hub to see the node's devices")
    return http, node, await http.upload(GCODE, "tower.gcode")


async def _knows(http: Http, node: ScriptedNode) -> bool:
    devices = await http.devices()
    return all(devices.get(f"{node.id}/{d}", {}).get("state") == "idle" for d in node.devices)


async def node_seen_offline(http: Http, node: ScriptedNode) -> bool:
    nodes = {n["id"]: n for n in (await http.call("GET", "/api/v1/nodes"))[1]["items"]}
    return node.id in nodes and not nodes[node.id]["online"]


async def accept_and_start(node: ScriptedNode, start: StartJob) -> None:
    await node.event(CommandAck(command_id=start.command_id, status="accepted"))
    await node.event(JobStarted(device=start.device, job_id=start.job_id, lines_total=3))


async def complete(node: ScriptedNode, start: StartJob) -> None:
    await node.event(JobCompleted(device=start.device, job_id=start.job_id, duration_s=42.0, lines=3, resends=1))


async def test_a_queued_job_goes_to_the_idle_device_and_runs_to_completion(farm: Farm) -> None:
    http, node, sha = await setup(farm, "mk3s-1")
    job = await http.submit(sha, device=f"{node.id}/mk3s-1")

    start = await node.command()
    assert isinstance(start, StartJob)
    assert (start.command_id, start.device, start.job_id) == (f"start-{job['id']}-0", "mk3s-1", str(job["id"]))
    assert (start.file_sha256, start.file_size) == (sha, len(GCODE))
    async with http.session.get(start.file_url) as r:  # what the agent downloads
        assert await r.read() == GCODE
    assigned = await http.job(job["id"])
    assert assigned["state"] == "assigned" and assigned["device"] == f"{node.id}/mk3s-1"

    await accept_and_start(node, start)
    await node.event(JobProgress(device="mk3s-1", job_id=start.job_id, progress=0.5, lines_done=2))
    printing = await http.wait_state(job["id"], "printing")
    assert printing["started_at"] is not None
    await complete(node, start)
    done = await http.wait_state(job["id"], "completed")
    assert (done["progress"], done["lines"], done["resends"], done["duration_s"]) == (1.0, 3, 1, 42.0)
    assert done["finished_at"] >= done["started_at"]


async def test_a_rejected_start_goes_back_to_the_queue_with_the_devices_reason(farm: Farm) -> None:
    http, node, sha = await setup(farm, "mk3s-1")
    job = await http.submit(sha, device=f"{node.id}/mk3s-1")
    first = await node.command()
    await node.event(CommandAck(command_id=first.command_id, status="rejected", reason="bed not clear"))

    retry = await node.command()
    assert retry.command_id == f"start-{job['id']}-1"
    again = await http.job(job["id"])
    assert again["attempt"] == 1 and "bed not clear" in again["error"]


async def test_an_unacknowledged_start_goes_back_to_the_queue(farm: Farm) -> None:
    http, node, sha = await setup(farm, "mk3s-1", ack_timeout_s=2.0)
    job = await http.submit(sha, device=f"{node.id}/mk3s-1")
    first = await node.command()
    await node.die()
    await eventually(lambda: node_seen_offline(http, node), "the hub to see the node go offline")

    queued = await http.wait_state(job["id"], "queued")
    assert queued["attempt"] == 1 and queued["device"] is None
    assert f"did not acknowledge {first.command_id}" in queued["error"]

    await node.birth()
    retry = await node.command()
    assert retry.command_id == f"start-{job['id']}-1"


async def test_a_late_acceptance_of_a_job_still_queued_keeps_that_run(farm: Farm) -> None:
    http, node, sha = await setup(farm, "mk3s-1", ack_timeout_s=2.0)
    job = await http.submit(sha, device=f"{node.id}/mk3s-1")
    start = await node.command()
    await node.die()
    await eventually(lambda: node_seen_offline(http, node), "the hub to see the node go offline")
    await http.wait_state(job["id"], "queued")

    await accept_and_start(node, start)  # the agent was slow, not gone: the part is printing
    printing = await http.wait_state(job["id"], "printing")
    assert printing["device"] == f"{node.id}/mk3s-1"
    await complete(node, start)
    await http.wait_state(job["id"], "completed")


async def test_a_late_acceptance_after_the_job_moved_to_another_device_is_cancelled(isolated_farm: Farm) -> None:
    http, slow, sha = await setup(isolated_farm, "a", ack_timeout_s=2.0)
    job = await http.submit(sha)
    stale = await slow.command()
    await slow.die()
    await eventually(lambda: node_seen_offline(http, slow), "the hub to see the slow node go offline")
    await http.wait_state(job["id"], "queued")

    fast = await isolated_farm.node("b")
    moved = await fast.command()
    assert moved.command_id == f"start-{job['id']}-1" and moved.device == "b"
    await accept_and_start(fast, moved)
    await http.wait_state(job["id"], "printing")

    await slow.event(CommandAck(command_id=stale.command_id, status="accepted"))
    stop = await slow.command()
    assert isinstance(stop, CancelJob)
    assert (stop.device, stop.job_id) == ("a", str(job["id"]))
    still = await http.job(job["id"])
    assert still["state"] == "printing" and still["device"] == f"{fast.id}/b"


async def test_print_jobs_never_go_to_render_nodes(isolated_farm: Farm) -> None:
    gpu = RenderCapabilities(blender_version="4.2", engines=["CYCLES"], devices=["CPU"])
    http, renderer, sha = await setup(isolated_farm, "gpu-0", render=gpu)
    status, problem = await http.call("POST", "/api/v1/jobs",
                                      json={"file_sha256": sha, "device": f"{renderer.id}/gpu-0"})
    assert status == 422 and "render node" in problem["detail"]

    job = await http.submit(sha)
    printer = await isolated_farm.node("mk3s-1")
    start = await printer.command()
    assert start.job_id == str(job["id"])
    assert renderer.commands.empty()


async def test_cancelling_a_running_job_asks_the_device_and_waits_for_it(farm: Farm) -> None:
    http, node, sha = await setup(farm, "mk3s-1")
    job = await http.submit(sha, device=f"{node.id}/mk3s-1")
    start = await node.command()
    await accept_and_start(node, start)
    await http.wait_state(job["id"], "printing")

    status, body = await http.call("POST", f"/api/v1/jobs/{job['id']}/cancel")
    assert status == 202 and body["state"] == "printing" and body["cancel_requested"] is True
    cancel = await node.command()
    assert cancel == CancelJob(command_id=f"cancel-{job['id']}", device="mk3s-1", job_id=str(job["id"]))

    await node.event(CommandAck(command_id=cancel.command_id, status="accepted"))
    await node.event(JobFailed(device="mk3s-1", job_id=start.job_id, reason="cancelled by request", cancelled=True))
    done = await http.wait_state(job["id"], "cancelled")
    assert done["error"] == "cancelled by request"


async def test_higher_priority_first_then_oldest_first(farm: Farm) -> None:
    http, node, sha = await setup(farm, "mk3s-1")
    pin = f"{node.id}/mk3s-1"
    running = await http.submit(sha, device=pin)
    start = await node.command()
    await accept_and_start(node, start)
    await http.wait_state(running["id"], "printing")
    older = await http.submit(sha, device=pin)
    newer = await http.submit(sha, device=pin)
    urgent = await http.submit(sha, device=pin, priority=5)

    order = []
    for _ in range(3):
        await complete(node, start)
        start = await node.command()
        order.append(int(start.job_id))
        await accept_and_start(node, start)
    assert order == [urgent["id"], older["id"], newer["id"]]


async def test_a_hub_restart_keeps_queued_and_assigned_jobs_and_resends_the_same_start(farm: Farm) -> None:
    http, node, sha = await setup(farm, "a", "b")
    printing = await http.submit(sha, device=f"{node.id}/a")
    start_a = await node.command()
    await accept_and_start(node, start_a)
    await http.wait_state(printing["id"], "printing")
    assigned = await http.submit(sha, device=f"{node.id}/b")
    sent = await node.envelope()
    queued = await http.submit(sha, device=f"{node.id}/b")
    await farm.hubs[-1].stop()

    hub = await farm.hub()
    http = farm.http(hub)
    resent = await node.envelope()
    # Only the unanswered start goes out again, byte for byte; the printing job's does not.
    assert resent == sent
    states = {j["id"]: j["state"] for j in (await http.call("GET", "/api/v1/jobs"))[1]["items"]}
    assert states == {printing["id"]: "printing", assigned["id"]: "assigned", queued["id"]: "queued"}

    await accept_and_start(node, sent.body)
    await complete(node, sent.body)
    nxt = await node.command()
    assert nxt.command_id == f"start-{queued['id']}-0"
