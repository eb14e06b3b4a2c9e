"""The scripting client and the operator CLI against a real farm (hub, agent, virtual printer)."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from pathlib import Path

import pytest

from farmhand import cli, ops_cli
from farmhand.client import HubClient, MqttClient
from farmhand.sample_gcode import ring_tower

from .authkit import ADMIN_TOKEN
from .farm import OnePrinterFarm
from .hubkit import farm  # noqa: F401 - fixture

pytestmark = pytest.mark.integration


def run_cli(_: object, *argv: str) -> tuple[int, str, str]:
    """`farmhand ARGV` as the console script parses and runs it, minus its logging setup."""
    out, err = io.StringIO(), io.StringIO()
    code = ops_cli.run(cli._parser().parse_args(list(argv)), out, err)
    return code, out.getvalue(), err.getvalue()


async def test_submit_copies_wait_list_cancel_and_tokens(private_mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    part = tmp_path / "ring.gcode"
    part.write_text(ring_tower(height_mm=0.6))
    async with OnePrinterFarm(tmp_path, private_mosquitto.url, speed_factor=500) as farm:
        hub = ["--hub", farm.hub.http_url, "--token", ADMIN_TOKEN]
        code, out, err = await asyncio.to_thread(
            run_cli, None, "jobs", "submit", str(part), "--copies", "2", "--wait", "--timeout", "60", "--json", *hub)
        assert code == 0, err
        jobs = json.loads(out)
        assert [j["state"] for j in jobs] == ["completed", "completed"]

        code, out, _ = await asyncio.to_thread(run_cli, None, "jobs", "list", "--state", "completed", *hub)
        assert code == 0 and out.splitlines()[0].split()[:3] == ["ID", "NAME", "STATE"]
        assert sum(" completed " in line for line in out.splitlines()) == 2

        code, out, _ = await asyncio.to_thread(run_cli, None, "devices", "--json", *hub)
        assert [d["ref"].split("/")[1] for d in json.loads(out)] == ["mk3s-1"]

        code, out, _ = await asyncio.to_thread(run_cli, None, "token", "create", "--name", "wall", "--role",
                                               "viewer", "--json", *hub)
        viewer = json.loads(out)["token"]
        viewer_client = HubClient(farm.hub.http_url, viewer)
        assert len(await asyncio.to_thread(viewer_client.jobs)) == 2

        code, _, err = await asyncio.to_thread(run_cli, None, "jobs", "cancel", str(jobs[0]["id"]),
                                               "--hub", farm.hub.http_url, "--token", viewer)
        assert code == 1 and "Forbidden" in err
        code, _, err = await asyncio.to_thread(run_cli, None, "jobs", "cancel", str(jobs[0]["id"]), *hub)
        assert code == 1 and "already completed" in err


async def test_mqtt_requests_and_events(private_mosquitto, tmp_path: Path) -> None:
    async with OnePrinterFarm(tmp_path, private_mosquitto.url, speed_factor=500) as farm:
        mqtt = await asyncio.to_thread(MqttClient, private_mosquitto.url)
        done = threading.Event()
        seen: list[str] = []

        def on_completed(node: str, event) -> None:  # type: ignore[no-untyped-def]
            seen.append(event.job_id)
            done.set()

        mqtt.on_event(on_completed, "job_completed")
        try:
            sha = await farm.api.upload(ring_tower(height_mm=0.4))
            job = await asyncio.to_thread(mqtt.request, "submit_job", file_sha256=sha)
            assert job["state"] == "queued"
            assert await asyncio.to_thread(done.wait, 60), "no job_completed event"
            assert seen == [str(job["id"])]
            listed = await asyncio.to_thread(mqtt.request, "list_jobs", state="completed")
            assert [j["id"] for j in listed["items"]] == [job["id"]]
        finally:
            await asyncio.to_thread(mqtt.close)


async def test_an_admin_disables_and_deletes_a_user_from_the_command_line(farm) -> None:  # type: ignore[no-untyped-def]
    hub_proc = await farm.hub()
    hub = ["--hub", hub_proc.http_url, "--token", ADMIN_TOKEN]
    client = HubClient(hub_proc.http_url, ADMIN_TOKEN)
    await asyncio.to_thread(client.request, "POST", "/api/v1/users",
                            {"username": "olga", "password": "olga-password-1", "role": "operator"})

    code, out, _ = await asyncio.to_thread(run_cli, None, "user", "disable", "olga", "--json", *hub)
    assert code == 0 and json.loads(out)["disabled_at"] is not None
    code, out, _ = await asyncio.to_thread(run_cli, None, "user", "logout", "olga", *hub)
    assert code == 0 and "0 session(s) ended" in out
    code, out, _ = await asyncio.to_thread(run_cli, None, "user", "delete", "olga", *hub)
    assert code == 0
    code, out, _ = await asyncio.to_thread(run_cli, None, "user", "list", *hub)
    assert code == 0 and "olga" not in out and "admin" in out
    code, _, err = await asyncio.to_thread(run_cli, None, "user", "disable", "nobody", *hub)
    assert code == 1 and "no user named 'nobody'" in err
