"""The OctoPrint driver against the real OctoPrint 1.11 from PyPI and its bundled virtual printer,
and the same tests against Farmhand's OctoPrint simulator (farmhand/sim/octoprint.py), which
must behave alike for the benchmark and the demo to mean anything.

One real OctoPrint serves the module (it takes seconds to start); each test begins with its
printer connected and idle, as an operator leaves it. Faults come from the virtual
printer's own ``!!DEBUG:`` commands; a lost network is a relay the test cuts.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from agent.config import AgentConfig
from agent.devices.base import Console, declared_capabilities
from agent.devices.network import Backoff
from agent.devices.octoprint import OctoPrintPrinter, request_app_key
from agent.devices.octoprint.appkeys import AppKeyRefused
from agent.node import Agent
from farmhand.sim.octoprint import OctoPrintFarm
from protocol import codec, topics
from protocol.messages import DeviceState, PauseJob, ResumeJob, StartJob
from tests.agent_support import FileServer, Listener, wait_for
from tests.conftest import PrivateMosquitto, free_port
from tests.octoprint_driving import driver, ended, job, job_id, printing, running
from tests.octoprint_peer import PASSWORD, USER, OctoPrintApi, OctoPrintPeer, gcode_job
from tests.tcp_relay import TcpRelay
from tests.test_network_printer import Recorder

pytestmark = pytest.mark.integration

LONG = 1500  # lines: several seconds on the fast virtual printer, time to pause, cut a link, restart
MEDIUM = 800
SHORT = 300


@pytest.fixture(scope="module")
def octoprint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OctoPrintPeer]:
    peer = OctoPrintPeer(tmp_path_factory.mktemp("octoprint"))
    peer.prepare()
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture(params=["octoprint", "simulator"])
async def op(request: pytest.FixtureRequest) -> AsyncIterator[OctoPrintApi]:
    """The real OctoPrint, then the simulator: each test that both can pass runs on both."""
    if request.param == "octoprint":
        peer: OctoPrintPeer = request.getfixturevalue("octoprint")
        await peer.printer_ready()
        yield peer
        return
    farm = OctoPrintFarm()
    sim = await farm.add("simulated-application-key")
    try:
        yield OctoPrintApi(sim.port, sim.api_key)
    finally:
        await farm.close()


@pytest.fixture
async def real_op(octoprint: OctoPrintPeer) -> OctoPrintPeer:
    """Only the real OctoPrint: for its user accounts and Application Keys, which the simulator has not."""
    await octoprint.printer_ready()
    return octoprint


# ------------------------------------------------------------------------ a whole print, through an agent


async def test_a_whole_print_reaches_the_hub_as_job_events(op: OctoPrintApi, private_mosquitto: PrivateMosquitto,
                                                           tmp_path: Path) -> None:
    node = f"test-{uuid.uuid4().hex[:8]}"
    config = AgentConfig.model_validate({
        "node_id": node, "mqtt": {"url": private_mosquitto.url, "keepalive_s": 5},
        "storage": {"dir": tmp_path / "agent"}, "telemetry_interval_s": 0.5,
        "devices": [{"id": "op1", "driver": "octoprint", "url": op.url, "api_key": op.api_key}],
    })
    the_job = job_id()
    async with Listener(private_mosquitto.url, f"farmhand/v1/node/{node}/#") as listener, FileServer() as files:
        agent = Agent(config)
        await agent.start()

        def events() -> list[Any]:
            return [e.body for e in listener.envelopes(topics.node_event(node))]

        def seen(kind: str) -> bool:
            return any(e.type == kind for e in events())

        async def send(command: Any) -> None:
            body = codec.encode(codec.make("hub", command))
            await listener.session.publish_confirmed(topics.node_command(node), body)

        try:
            await wait_for(lambda: any(s.state is DeviceState.IDLE for s in listener.bodies(type="device_status")),
                           20, "the printer idle in the hub")
            url, sha, size = files.add(gcode_job(LONG))
            await send(StartJob(command_id=uuid.uuid4().hex, device="op1", job_id=the_job, file_sha256=sha,
                                file_size=size, file_url=url))
            await wait_for(lambda: seen("job_progress"), 30, "progress")
            await send(PauseJob(command_id=uuid.uuid4().hex, device="op1"))
            await wait_for(lambda: seen("job_paused"), 15, "the pause")
            await send(ResumeJob(command_id=uuid.uuid4().hex, device="op1"))
            await wait_for(lambda: seen("job_completed") or seen("job_failed"), 60, "the job's end")
        finally:
            await agent.stop()
    kinds = [e.type for e in events() if e.type.startswith("job_")]
    assert kinds[0] == "job_started" and kinds[-1] == "job_completed", kinds
    assert kinds.count("job_started") == kinds.count("job_completed") == 1
    assert kinds.index("job_paused") < kinds.index("job_resumed") < kinds.index("job_completed")
    progress = [e.progress for e in events() if e.type == "job_progress"]
    # OctoPrint may report 100 % for a moment before it leaves "Printing": the last reading can be 1.0.
    assert progress == sorted(progress) and progress[0] < progress[-1] <= 1
    readings = listener.bodies(type="telemetry")
    assert any("T0" in r.temperatures and "B" in r.temperatures for r in readings)
    assert (await op.prints_of(f"farmhand-job-{the_job}.gcode"))["success"] == 1


async def test_an_upload_logs_its_progress_and_is_checked_by_size_and_sha1(op: OctoPrintApi, tmp_path: Path) -> None:
    rec = Recorder()
    path = job(tmp_path, MEDIUM)
    name = f"farmhand-job-{job_id()}.gcode"
    async with running(driver(op.url, op.api_key, rec)) as printer:
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 20, "idle")
        with capture_logs() as logged:
            stored = await printer.upload(path, name)
    assert stored == name
    progress = [e for e in logged if e["event"] == "uploading"]
    assert progress and all(e["file"] == name for e in progress)
    assert progress[-1]["sent"] == progress[-1]["total"] == path.stat().st_size
    (verified,) = [e for e in logged if e["event"] == "upload verified"]
    assert verified["bytes"] == path.stat().st_size and len(verified["sha1"]) == 40


# ------------------------------------------------------------------------ cancel, emergency stop, firmware faults


async def test_cancel_ends_the_job_as_cancelled(op: OctoPrintApi, tmp_path: Path) -> None:
    rec = Recorder()
    async with running(driver(op.url, op.api_key, rec)) as printer:
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 20, "idle")
        the_job = job_id()
        await printer.start_job(the_job, job(tmp_path, LONG))
        await printing(printer, rec, the_job)
        await printer.cancel()
        await wait_for(lambda: ended(rec), 20, "the job's end")
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 20, "idle again")
    (end,) = ended(rec)
    assert end.type == "job_failed" and end.cancelled and end.job_id == the_job
    assert printer.status().job_id is None


async def test_emergency_stop_halts_the_printer_and_fails_the_job_in_octoprints_words(
        op: OctoPrintApi, tmp_path: Path) -> None:
    rec = Recorder()
    async with running(driver(op.url, op.api_key, rec)) as printer:
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 20, "idle")
        await printer.start_job(job_id(), job(tmp_path, LONG))
        await printing(printer, rec, "e-stop")
        await printer.emergency_stop()
        await wait_for(lambda: ended(rec) and printer.status().state is DeviceState.ERROR, 20, "the stop")
        assert "M112" in (printer.status().error or "")
        await asyncio.sleep(1.5)
        assert printer.status().state is DeviceState.ERROR, "an error stays for the operator to clear"
    (end,) = ended(rec)
    assert end.type == "job_failed" and not end.cancelled and "M112" in end.reason


@pytest.mark.parametrize("fault, words", [("mintemp_error", "MINTEMP triggered!"),
                                          ("drop_connection", "SerialTimeoutException"),
                                          ("go_awol", "consecutive timeouts")])
async def test_a_printer_fault_mid_print_fails_the_job_in_the_printers_words(
        op: OctoPrintApi, tmp_path: Path, fault: str, words: str) -> None:
    rec = Recorder()
    async with running(driver(op.url, op.api_key, rec)) as printer:
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 20, "idle")
        await printer.start_job(job_id(), job(tmp_path, LONG))
        await printing(printer, rec, fault)
        await op.debug(fault)
        await wait_for(lambda: ended(rec), 30, "the job's end")
        await wait_for(lambda: printer.status().state is DeviceState.ERROR, 20, "the error state")
        status = printer.status()
    (end,) = ended(rec)
    assert end.type == "job_failed" and not end.cancelled
    assert words in end.reason and words in (status.error or "")


async def test_a_resend_request_mid_print_is_handled_and_the_job_completes(op: OctoPrintApi, tmp_path: Path) -> None:
    rec = Recorder()
    async with running(driver(op.url, op.api_key, rec)) as printer:
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 20, "idle")
        the_job = job_id()
        await printer.start_job(the_job, job(tmp_path, SHORT * 2))
        await printing(printer, rec, the_job)
        await op.debug("trigger_resend_lineno")
        await wait_for(lambda: ended(rec), 30, "the job's end")
    assert [e.type for e in ended(rec)] == ["job_completed"]
    assert (await op.prints_of(f"farmhand-job-{the_job}.gcode")) \
        | {"last": None} == {"success": 1, "failure": 0, "last": None}


# ------------------------------------------------------------------------ the link: lost, restored, restarted


async def test_a_print_that_ends_while_the_link_is_down_completes_once_when_it_returns(
        op: OctoPrintApi, tmp_path: Path) -> None:
    rec = Recorder()
    async with TcpRelay("127.0.0.1", op.port) as relay, running(driver(relay.url, op.api_key, rec)) as printer:
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 20, "idle")
        the_job = job_id()
        await printer.start_job(the_job, job(tmp_path, SHORT * 2))
        await printing(printer, rec, the_job)
        await relay.cut()
        await wait_for(lambda: printer.status().state is DeviceState.DISCONNECTED, 10, "the link seen down")
        await op.wait_state(("Operational",), timeout=30)  # the print goes on without us, and ends
        assert not ended(rec)
        await relay.restore()
        await wait_for(lambda: ended(rec), 20, "the job's end after the link came back")
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 10, "idle")
    assert [e.type for e in ended(rec)] == ["job_completed"]
    assert rec.types().count("job_started") == 1
    assert (await op.prints_of(f"farmhand-job-{the_job}.gcode"))["success"] == 1
    assert printer.status().job_id is None


async def test_an_agent_restarted_mid_print_finds_the_job_and_never_starts_it_again(
        op: OctoPrintApi, tmp_path: Path) -> None:
    first, second = Recorder(), Recorder()
    the_job = job_id()
    async with running(driver(op.url, op.api_key, first)) as printer:
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 20, "idle")
        await printer.start_job(the_job, job(tmp_path, MEDIUM))
        await printing(printer, first, the_job)
    async with running(driver(op.url, op.api_key, second)) as again:
        await wait_for(lambda: again.status().job_id == the_job, 20, "the job found again")
        await again.start_job(the_job, job(tmp_path, MEDIUM))  # the hub's start, replayed: no second start
        await wait_for(lambda: ended(second), 60, "the job's end")
    assert "job_started" not in second.types()
    assert [e.type for e in ended(second)] == ["job_completed"] and ended(second)[0].job_id == the_job
    assert (await op.prints_of(f"farmhand-job-{the_job}.gcode"))["success"] == 1


async def test_an_octoprint_without_its_printer_is_asked_to_connect_it(op: OctoPrintApi) -> None:
    status, _ = await op.call("POST", "/api/connection", {"command": "disconnect"})
    assert status == 204
    await op.wait_state(("Offline", "Closed"))
    rec = Recorder()
    async with running(driver(op.url, op.api_key, rec)) as printer:
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 20, "the printer connected")
    assert [s.state for s in rec.statuses] == [DeviceState.DISCONNECTED, DeviceState.IDLE]
    assert (await op.state()) == "Operational"


async def test_many_simulated_octoprints_share_one_loop(tmp_path: Path) -> None:
    farm = OctoPrintFarm()
    try:
        sims = [await farm.add(f"key-{i}") for i in range(50)]
        recs = [Recorder() for _ in sims]
        printers = [driver(sim.url, sim.api_key, rec, device_id=f"sim{i}") for i, (sim, rec) in
                    enumerate(zip(sims, recs, strict=True))]
        for printer in printers:
            await printer.open()
        try:
            await wait_for(lambda: all(p.status().state is DeviceState.IDLE for p in printers), 20, "all idle")
            the_job = job_id()
            await printers[7].start_job(the_job, job(tmp_path, SHORT))
            await wait_for(lambda: ended(recs[7]), 20, "the job's end")
            await farm.go_offline(sims[3])
            await wait_for(lambda: printers[3].status().state is DeviceState.DISCONNECTED, 10, "one offline")
            await farm.go_online(sims[3])
            await wait_for(lambda: printers[3].status().state is DeviceState.IDLE, 10, "back online")
        finally:
            for printer in printers:
                await printer.close()
    finally:
        await farm.close()
    assert [e.type for e in ended(recs[7])] == ["job_completed"]
    assert all(p.status().state is DeviceState.IDLE for i, p in enumerate(printers) if i != 3)


async def test_wrong_credentials_are_one_clear_error_and_no_retry_storm(op: OctoPrintApi) -> None:
    rec = Recorder()
    refused = OctoPrintPrinter("op1", rec, url="", api_key="not-a-key-octoprint-knows", poll_interval_s=0.5,
                               backoff=Backoff(first_s=0.2, max_s=30.0))
    async with TcpRelay("127.0.0.1", op.port) as relay:
        refused.url = relay.url
        async with running(refused) as printer:
            await wait_for(lambda: printer.status().state is DeviceState.ERROR, 10, "the refusal")
            await asyncio.sleep(2.0)  # a lost link would be retried here after 0.2, 0.4, 0.8 s
            attempts = relay.accepted
    assert "refused the application key" in (printer.status().error or "")
    assert attempts == 1
    assert len({(s.state, s.error) for s in rec.statuses}) == len(rec.statuses) <= 2, "one error, said once"


async def test_unreachable_or_silent_servers_are_offline_and_stall_nothing() -> None:
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # accepts, never answers
    silent_url = f"http://127.0.0.1:{silent.sockets[0].getsockname()[1]}"
    closed_url = f"http://127.0.0.1:{free_port()}"
    recs = [Recorder() for _ in range(21)]
    printers = [driver(closed_url, "key", rec, device_id=f"dead{i}") for i, rec in enumerate(recs[:20])]
    printers.append(driver(silent_url, "key", recs[20], device_id="silent", offline_after_s=1.0))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        for p in printers:
            await p.open()
        await asyncio.sleep(3.0)
        assert all(p.status().state is DeviceState.DISCONNECTED for p in printers)
        assert ticks >= 20, "the loop kept running while 21 printers failed"
    finally:
        ticker.cancel()
        for p in printers:
            await p.close()
        silent.close()
    assert printers[-1]._link_error and "no report" in printers[-1]._link_error  # noqa: SLF001


async def test_a_changed_user_asks_for_a_new_login_and_the_state_keeps_flowing(real_op: OctoPrintPeer) -> None:
    rec = Recorder()
    async with running(driver(real_op.url, real_op.api_key, rec)) as printer:
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 20, "idle")
        logins = []
        original = printer._authenticate  # noqa: SLF001

        async def counted(ws: Any) -> None:
            logins.append(1)
            await original(ws)

        printer._authenticate = counted  # type: ignore[method-assign]  # noqa: SLF001
        # A change of the user's groups makes OctoPrint ask every socket of the user to log in again.
        status, answer = await real_op.call("PUT", f"/api/access/users/{USER}", {"groups": ["admins", "users"]})
        assert status == 200, answer
        await wait_for(lambda: logins, 10, "a new login")
        await real_op.call("POST", "/api/printer/tool", {"command": "target", "targets": {"tool0": 42}})
        await wait_for(lambda: printer.status().temperatures.get("T0") is not None
                       and printer.status().temperatures["T0"].target == 42, 10, "the new target reported")
        await real_op.call("POST", "/api/printer/tool", {"command": "target", "targets": {"tool0": 0}})
        await real_op.call("PUT", f"/api/access/users/{USER}", {"groups": ["admins"]})


async def test_the_console_returns_the_firmwares_replies(op: OctoPrintApi) -> None:
    rec = Recorder()
    async with running(driver(op.url, op.api_key, rec)) as printer:
        assert isinstance(printer, Console) and "console" in declared_capabilities(printer)
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 20, "idle")
        await printer.send_gcode("c1", ["M115 ; which firmware", "", "M105"])
    (out,) = [e for e in rec.events if e.type == "console_output"]
    assert out.command_id == "c1"
    assert any("FIRMWARE_NAME:Virtual Marlin" in line for line in out.lines), out.lines
    assert out.lines[-1].startswith("ok T:"), f"the answers end with the last command's ok: {out.lines}"


# ------------------------------------------------------------------------ getting a key


async def _approve_pending(op: OctoPrintPeer, decision: bool) -> None:
    """What a person does in OctoPrint's interface: log in, see the request, allow or deny it."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{op.url}/login") as r:  # the login page sets the CSRF cookie
            assert r.status == 200
        csrf = next(c.value for c in http.cookie_jar if c.key.startswith("csrf_token"))
        async with http.post(f"{op.url}/api/login", json={"user": USER, "pass": PASSWORD, "remember": False},
                             headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 200, await r.text()
        pending: dict[str, Any] = {}
        while not pending:
            async with http.get(f"{op.url}/api/plugin/appkeys") as r:
                pending = (await r.json())["pending"]
            await asyncio.sleep(0.1)
        (token,) = pending
        async with http.post(f"{op.url}/plugin/appkeys/decision/{token}", json={"decision": decision},
                             headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 204, await r.text()


async def test_an_application_key_is_requested_and_approved_by_a_person(real_op: OctoPrintPeer) -> None:
    prompts: list[str] = []
    approve = asyncio.create_task(_approve_pending(real_op, True))
    key = await request_app_key(real_op.url, app="farmhand-approved", user=USER, prompt=prompts.append, poll_s=0.2,
                                timeout_s=30)
    await approve
    assert prompts and prompts[0].startswith(real_op.url)
    rec = Recorder()
    async with running(driver(real_op.url, key, rec)) as printer:
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 20, "a session with the new key")
    deny = asyncio.create_task(_approve_pending(real_op, False))
    with pytest.raises(AppKeyRefused, match="denied"):
        await request_app_key(real_op.url, app="farmhand-denied", user=USER, prompt=lambda _: None, poll_s=0.2,
                              timeout_s=30)
    await deny


async def test_farmhand_octoprint_key_prints_the_approved_key(real_op: OctoPrintPeer,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from farmhand import cli, octoprint_key

    command = ["octoprint-key", real_op.url, "--user", USER, "--app", "farmhand-cli"]
    args = cli._parser().parse_args(command)  # noqa: SLF001
    approve = asyncio.create_task(_approve_pending(real_op, True))
    assert await octoprint_key.run_from_args(args) == 0
    await approve
    out, err = capsys.readouterr()
    key = out.strip()
    assert "Approve the request for 'farmhand-cli'" in err
    async with aiohttp.ClientSession(headers={"X-Api-Key": key}) as http:
        async with http.get(f"{real_op.url}/api/version") as r:
            assert r.status == 200
