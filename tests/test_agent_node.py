"""The agent node over a real Mosquitto: presence, commands acted on once, downloads that never block a stop.

The devices here are a recording test double of our own ``Device`` interface;
the serial driver is tested against the virtual printer by its own tests.
"""

from __future__ import annotations

import asyncio

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import __version__, devices
from agent.commands import CommandDispatcher, CommandStore
from agent.config import AgentConfig
from agent.devices.base import CommandRejected, Device, Emitter
from agent.files import JobFileCache
from agent.node import Agent
from agent.event_outbox import EventOutbox
from protocol import codec, topics
from protocol.messages import (
    CancelJob,
    CommandAck,
    ConsoleOutput,
    DeviceInfo,
    DeviceState,
    DeviceStatus,
    EmergencyStop,
    Heater,
    HubState,
    JobStarted,
    PauseJob,
    Rebirth,
    SendGcode,
    StartJob,
    Telemetry,
)

from .agent_support import FileServer, Listener, drop_connection, wait_for


class RecordingDevice(Device):
    """Records every call; refuses what a real printer would refuse."""

    def __init__(self, device_id: str, emitter: Emitter) -> None:
        super().__init__(device_id, emitter)
        self.calls: list[tuple[Any, ...]] = []
        self.state = DeviceState.IDLE
        self.job_id: str | None = None

    def info(self) -> DeviceInfo:
        return DeviceInfo(id=self.id, kind="serial_gcode", model="test-printer", firmware="Recorder 1.0")

    def status(self) -> DeviceStatus:
        return DeviceStatus(device=self.id, state=self.state, job_id=self.job_id)

    def _set(self, state: DeviceState, job_id: str | None) -> None:
        self.state, self.job_id = state, job_id
        self.emitter.status(self.status())

    async def open(self) -> None:
        self.calls.append(("open",))

    async def close(self) -> None:
        self.calls.append(("close",))

    async def start_job(self, job_id: str, path: Path) -> None:
        if self.state is not DeviceState.IDLE:
            raise CommandRejected(f"device {self.id} is {self.state.value}")
        self.calls.append(("start_job", job_id, path.read_bytes()))
        self.emitter.event(JobStarted(device=self.id, job_id=job_id, lines_total=1))
        self._set(DeviceState.PRINTING, job_id)

    async def pause(self) -> None:
        if self.state is not DeviceState.PRINTING:
            raise CommandRejected(f"device {self.id} is not printing")
        self.calls.append(("pause",))
        self._set(DeviceState.PAUSED, self.job_id)

    async def resume(self) -> None:
        self.calls.append(("resume",))

    async def cancel(self) -> None:
        self.calls.append(("cancel",))
        self._set(DeviceState.IDLE, None)

    async def emergency_stop(self) -> None:
        self.calls.append(("emergency_stop",))
        self._set(DeviceState.ERROR, None)


@pytest.fixture(autouse=True)
def recording_driver() -> Iterator[None]:
    devices.register("recording", lambda cfg, emitter, poll_s: RecordingDevice(cfg.id, emitter))
    yield
    devices.unregister("recording")


def make_config(tmp_path: Path, url: str, **extra: Any) -> AgentConfig:
    return AgentConfig.model_validate({
        "node_id": f"test-{uuid.uuid4().hex[:12]}",
        "mqtt": {"url": url, "keepalive_s": 5},
        "storage": {"dir": tmp_path / "agent"},
        "devices": [{"id": d, "driver": "recording", "port": "/dev/null"} for d in ("p1", "p2")],
        **extra,
    })


@pytest.fixture
async def node(tmp_path: Path, mosquitto_url: str) -> AsyncIterator[tuple[AgentConfig, Listener]]:
    """A node's config and a listener on the node's whole subtree; cleans the broker's retained state after."""
    config = make_config(tmp_path, mosquitto_url)
    async with Listener(mosquitto_url, f"farmhand/v1/node/{config.node_id}/#") as listener:
        yield config, listener
        n = config.node_id
        await listener.clear_retained(topics.node_state(n), *(topics.device_status(n, d.id) for d in config.devices))


async def started(config: AgentConfig) -> Agent:
    agent = Agent(config)
    await agent.start()
    await agent.session.wait_connected(10)
    return agent


def device(agent: Agent, device_id: str = "p1") -> RecordingDevice:
    dev = agent.devices[device_id]
    assert isinstance(dev, RecordingDevice)
    return dev


async def send(listener: Listener, node_id: str, command: Any) -> None:
    await listener.session.publish_confirmed(topics.node_command(node_id), codec.encode(codec.make("hub", command)))


def acks(listener: Listener, command_id: str) -> list[CommandAck]:
    """Each answer once: with no hub to confirm them, a restarted agent sends its events again."""
    answers = {env.seq: env.body for _, env in listener.messages
               if env.body.type == "command_ack" and env.body.command_id == command_id}
    return list(answers.values())


def acked(listener: Listener, command_id: str, count: int = 1) -> Callable[[], bool]:
    return lambda: len(acks(listener, command_id)) >= count


@pytest.mark.integration
async def test_birth_is_retained_with_every_device_and_stop_says_goodbye(node, mosquitto_url: str) -> None:
    config, _ = node
    agent = await started(config)
    state_topic = topics.node_state(config.node_id)
    try:
        # A listener that connects later still learns the node and its devices: retained.
        async with Listener(mosquitto_url, f"farmhand/v1/node/{config.node_id}/#") as late:
            await wait_for(lambda: len(late.bodies(type="device_status")) == 2, what="retained state")
            (birth,) = late.bodies(state_topic)
            assert birth.online and birth.agent_version == __version__ and birth.hostname
            assert [(d.id, d.model) for d in birth.devices] == [("p1", "test-printer"), ("p2", "test-printer")]
            statuses = {b.device: b.state for b in late.bodies(type="device_status")}
            assert statuses == {"p1": DeviceState.IDLE, "p2": DeviceState.IDLE}
    finally:
        await agent.stop()
    assert device(agent).calls == [("open",), ("close",)]
    async with Listener(mosquitto_url, state_topic) as after:
        await wait_for(lambda: bool(after.bodies(state_topic)), what="the retained farewell")
        assert [b.online for b in after.bodies(state_topic)] == [False]


@pytest.mark.integration
async def test_the_last_will_marks_a_node_offline_when_its_connection_dies(node) -> None:
    config, listener = node
    state_topic = topics.node_state(config.node_id)
    agent = await started(config)
    try:
        await wait_for(lambda: len(listener.bodies(state_topic)) == 1, what="the birth")
        drop_connection(agent.session)
        await wait_for(lambda: len(listener.bodies(state_topic)) >= 3, what="death and rebirth")
        assert [b.online for b in listener.bodies(state_topic)][:3] == [True, False, True]
        assert agent.session.connects == 2
    finally:
        await agent.stop()


@pytest.mark.integration
async def test_the_birth_says_what_each_device_runs_and_a_rebirth_request_repeats_it(node, tmp_path: Path) -> None:
    """What the hub reconciles its jobs against after a reconnect, and asks for when it missed something."""
    config, listener = node
    state_topic = topics.node_state(config.node_id)
    agent = await started(config)
    try:
        await wait_for(lambda: len(listener.bodies(state_topic)) == 1, what="the birth")
        (birth,) = listener.bodies(state_topic)
        assert [(j.device, j.state, j.job_id) for j in birth.jobs] == [("p1", DeviceState.IDLE, None),
                                                                        ("p2", DeviceState.IDLE, None)]
        device(agent, "p2")._set(DeviceState.PRINTING, "17")
        before = len(listener.bodies(type="device_status"))
        await send(listener, config.node_id, Rebirth(reason="seq gap"))
        await wait_for(lambda: len(listener.bodies(state_topic)) == 2, what="the rebirth")
        reborn = listener.bodies(state_topic)[1]
        assert [(j.device, j.state, j.job_id) for j in reborn.jobs] == [("p1", DeviceState.IDLE, None),
                                                                         ("p2", DeviceState.PRINTING, "17")]
        await wait_for(lambda: len(listener.bodies(type="device_status")) >= before + 2, what="every status again")
        assert agent.commands.counters.malformed == 0 and not acks(listener, "seq gap")
    finally:
        await agent.stop()


@pytest.mark.integration
async def test_a_hub_that_comes_back_hears_the_birth_again(tmp_path: Path, private_mosquitto) -> None:  # type: ignore[no-untyped-def]
    """On a broker of its own: other hubs on the shared one announce themselves too."""
    config = make_config(tmp_path, private_mosquitto.url)
    state_topic = topics.node_state(config.node_id)
    async with Listener(private_mosquitto.url, state_topic) as listener:
        agent = await started(config)
        try:
            await wait_for(lambda: len(listener.bodies(state_topic)) == 1, what="the birth")
            for online in (True, False, True):  # first seen online (no rebirth), then a restart
                await listener.session.publish_confirmed(topics.hub_state(),
                                                         codec.encode(codec.make("hub", HubState(online=online))))
                await wait_for(lambda o=online: agent.hub_online is o, what=f"the hub seen online={online}")
            await wait_for(lambda: len(listener.bodies(state_topic)) == 2, what="a birth for the returning hub")
        finally:
            await agent.stop()


@pytest.mark.integration
async def test_a_command_delivered_twice_is_acted_on_once_even_across_a_restart(node, tmp_path: Path) -> None:
    config, listener = node
    agent = await started(config)
    device(agent).state = DeviceState.PRINTING
    pause = PauseJob(command_id=f"pause-{uuid.uuid4().hex}", device="p1")
    try:
        await send(listener, config.node_id, pause)
        await send(listener, config.node_id, pause)
        await wait_for(acked(listener, pause.command_id, 2), what="both answers")
        assert device(agent).calls.count(("pause",)) == 1
        assert agent.commands.counters.repeated == 1
    finally:
        await agent.stop()

    agent = await started(config)  # same node, same storage
    try:
        device(agent).state = DeviceState.PRINTING
        await send(listener, config.node_id, pause)
        await wait_for(acked(listener, pause.command_id, 3), what="the stored answer again")
        assert ("pause",) not in device(agent).calls
        assert [a.status for a in acks(listener, pause.command_id)] == ["done", "done", "done"]
        # No hub confirms here, so the restarted agent sends its unconfirmed events again, in order.
        seqs = list(dict.fromkeys(e.seq for e in listener.envelopes(topics.node_event(config.node_id))))
        assert seqs == sorted(seqs)
    finally:
        await agent.stop()


@pytest.mark.integration
async def test_bad_commands_are_counted_or_refused_and_the_loop_goes_on(node) -> None:
    config, listener = node
    agent = await started(config)
    try:
        command_topic = topics.node_command(config.node_id)
        await listener.session.publish_confirmed(command_topic, b"\xff not json")
        await listener.session.publish_confirmed(command_topic, codec.encode(codec.make(
            "hub", Telemetry(device="p1", temperatures={"T0": Heater(actual=20)}))))
        pause = PauseJob(command_id=f"c-{uuid.uuid4().hex}", device="p1")  # p1 is idle
        ghost = PauseJob(command_id=f"c-{uuid.uuid4().hex}", device="nope")
        await send(listener, config.node_id, pause)
        await send(listener, config.node_id, ghost)
        await wait_for(acked(listener, ghost.command_id), what="the unknown device's answer")
        await wait_for(acked(listener, pause.command_id), what="the idle device's answer")
        assert agent.commands.counters.malformed == 2
        (refused,) = acks(listener, ghost.command_id)
        assert refused.status == "rejected" and "unknown device 'nope'" in refused.reason
        (not_printing,) = acks(listener, pause.command_id)
        assert not_printing.status == "rejected" and not_printing.reason == "device p1 is not printing"
    finally:
        await agent.stop()


@pytest.mark.integration
async def test_start_job_fetches_the_file_then_starts_it(node) -> None:
    config, listener = node
    agent = await started(config)
    async with FileServer() as files:
        url, sha, size = files.add(b"G28\nG1 X5\n")
        start = StartJob(command_id=f"s-{uuid.uuid4().hex}", device="p1", job_id="42",
                         file_sha256=sha, file_size=size, file_url=url)
        bad_url, bad_sha, bad_size = files.add(b"G28\n", served=b"M84\n")
        tampered = StartJob(command_id=f"s-{uuid.uuid4().hex}", device="p2", job_id="43",
                            file_sha256=bad_sha, file_size=bad_size, file_url=bad_url)
        try:
            await send(listener, config.node_id, start)
            await send(listener, config.node_id, tampered)
            await wait_for(acked(listener, start.command_id), what="the start's answer")
            await wait_for(acked(listener, tampered.command_id), what="the tampered start's answer")
        finally:
            await agent.stop()
    assert device(agent, "p1").calls[1] == ("start_job", "42", b"G28\nG1 X5\n")
    assert [a.status for a in acks(listener, start.command_id)] == ["accepted"]
    events = [e.body.type for e in listener.envelopes(topics.node_event(config.node_id))]
    assert events.index("job_started") < events.index("command_ack")  # the driver's event, then the answer
    (refused,) = acks(listener, tampered.command_id)
    assert refused.status == "rejected" and "SHA-256 mismatch" in refused.reason
    assert not any(c[0] == "start_job" for c in device(agent, "p2").calls)


@pytest.mark.integration
async def test_emergency_stop_does_not_wait_behind_a_slow_download(node) -> None:
    config, listener = node
    agent = await started(config)
    async with FileServer() as files:
        files.flowing.clear()  # the download starts and then stalls
        url, sha, size = files.add(b"G28\n" * 1000)
        start = StartJob(command_id=f"s-{uuid.uuid4().hex}", device="p1", job_id="7",
                         file_sha256=sha, file_size=size, file_url=url)
        stop = EmergencyStop(command_id=f"e-{uuid.uuid4().hex}", device="p1")
        try:
            await send(listener, config.node_id, start)
            await wait_for(lambda: bool(files.requests), what="the download to begin")
            await send(listener, config.node_id, stop)
            await wait_for(acked(listener, stop.command_id), what="the emergency stop's answer")
            await wait_for(acked(listener, start.command_id), what="the aborted start's answer")
            assert files.flowing.is_set() is False, "the stop was answered while the download still hung"
        finally:
            await agent.stop()
    assert [a.status for a in acks(listener, stop.command_id)] == ["done"]
    (aborted,) = acks(listener, start.command_id)
    assert aborted.status == "rejected" and "emergency stop" in aborted.reason
    assert [c[0] for c in device(agent).calls] == ["open", "emergency_stop", "close"]


@pytest.mark.integration
async def test_a_late_cancel_never_stops_the_job_that_came_after(node) -> None:
    config, listener = node
    agent = await started(config)
    try:
        dev = device(agent)
        dev.state, dev.job_id = DeviceState.PRINTING, "job-2"
        late = CancelJob(command_id=f"c-{uuid.uuid4().hex}", device="p1", job_id="job-1")
        current = CancelJob(command_id=f"c-{uuid.uuid4().hex}", device="p1", job_id="job-2")
        await send(listener, config.node_id, late)
        await wait_for(acked(listener, late.command_id), what="the late cancel's answer")
        assert ("cancel",) not in dev.calls
        await send(listener, config.node_id, current)
        await wait_for(acked(listener, current.command_id), what="the cancel's answer")
        assert dev.calls.count(("cancel",)) == 1
    finally:
        await agent.stop()
    assert acks(listener, late.command_id)[0].status == "rejected"
    assert "not running job job-1 (current: job-2)" in acks(listener, late.command_id)[0].reason
    assert acks(listener, current.command_id)[0].status == "done"


@pytest.mark.integration
async def test_telemetry_and_host_metrics_are_published_while_connected(node, tmp_path: Path) -> None:
    config, listener = node
    config = config.model_copy(update={"metrics_interval_s": 0.1})
    agent = await started(config)
    try:
        device(agent).emitter.telemetry(Telemetry(device="p1", temperatures={"T0": Heater(actual=210, target=215)}))
        metrics_topic = topics.node_metrics(config.node_id)
        await wait_for(lambda: bool(listener.bodies(type="telemetry")) and bool(listener.bodies(metrics_topic)),
                       what="telemetry and metrics")
    finally:
        await agent.stop()
    (telemetry,) = listener.bodies(topics.device_telemetry(config.node_id, "p1"))
    assert telemetry.temperatures["T0"].target == 215
    metrics = listener.bodies(metrics_topic)[0]
    assert 0 <= metrics.cpu_pct <= 100 and 0 < metrics.mem_pct <= 100 and 0 < metrics.disk_pct <= 100
    assert metrics.uptime_s and metrics.uptime_s > 0


def test_a_command_cut_short_by_a_crash_is_answered_failed_on_the_next_start(tmp_path: Path) -> None:
    topic = topics.node_event("n1")
    spool = EventOutbox(tmp_path / "agent.sqlite3", "n1")
    CommandStore(spool, topic).begin(PauseJob(command_id="p-1", device="p1"))
    spool.close()  # the process dies before it answers

    spool = EventOutbox(tmp_path / "agent.sqlite3", "n1")
    store = CommandStore(spool, topic)
    dispatcher = CommandDispatcher({}, store, JobFileCache(tmp_path / "files", 1 << 20))
    assert dispatcher.answer_interrupted() == 1
    (ack,) = [codec.decode(p).body for _, _, p in spool.rows()]
    assert ack.command_id == "p-1" and ack.status == "failed" and "restarted" in ack.reason
    assert store.lookup("p-1") == (True, ack)  # a redelivery now gets this answer
    assert dispatcher.answer_interrupted() == 0
    spool.close()



class ConsoleDevice(RecordingDevice):
    """A device with a console whose lines take as long as the test says."""

    def __init__(self, device_id: str, emitter: Emitter) -> None:
        super().__init__(device_id, emitter)
        self.release = asyncio.Event()

    async def send_gcode(self, command_id: str, lines: list[str]) -> None:
        self.calls.append(("send_gcode", *lines))
        await self.release.wait()  # a G28 homing, say
        self.emitter.event(ConsoleOutput(device=self.id, command_id=command_id, lines=[f"echo:{lines[0]}", "ok"]))


@pytest.mark.integration
async def test_console_lines_run_in_the_background_and_never_hold_up_a_stop(node) -> None:
    config, listener = node
    devices.register("console", lambda cfg, emitter, poll_s: ConsoleDevice(cfg.id, emitter))
    config = config.model_copy(update={"devices": [
        config.devices[0].model_copy(update={"driver": "console"}), config.devices[1]]})
    agent = await started(config)
    try:
        home = SendGcode(command_id=f"g-{uuid.uuid4().hex}", device="p1", lines=["G28"])
        stop = EmergencyStop(command_id=f"e-{uuid.uuid4().hex}", device="p1")
        refused = SendGcode(command_id=f"g-{uuid.uuid4().hex}", device="p2", lines=["M105"])
        await send(listener, config.node_id, home)
        await send(listener, config.node_id, stop)
        await send(listener, config.node_id, refused)
        await wait_for(acked(listener, stop.command_id), what="the stop, while G28 still runs")
        assert not acks(listener, home.command_id)
        agent.devices["p1"].release.set()  # type: ignore[attr-defined]
        await wait_for(acked(listener, home.command_id), what="the console's answer")
    finally:
        await agent.stop()
        devices.unregister("console")
    assert acks(listener, home.command_id)[0].status == "done"
    (output,) = listener.bodies(type="console_output")
    assert output.command_id == home.command_id and output.lines == ["echo:G28", "ok"]
    assert acks(listener, refused.command_id)[0].status == "rejected"
    assert "no G-code console" in acks(listener, refused.command_id)[0].reason


def test_a_status_asks_the_other_devices_for_nothing_unless_an_info_changed(tmp_path: Path) -> None:
    """With 200 printers, rebuilding the whole birth on every status made the agent's start quadratic, and
    comparing every device's info on every status cost an agent of 200 printers a fifth of its CPU."""
    agent = Agent(make_config(tmp_path, "mqtt://127.0.0.1:1"))
    try:
        other = device(agent, "p2")
        asked: list[str] = []
        plain_status, plain_info = other.status, other.info
        other.status = lambda: (asked.append("status"), plain_status())[1]  # type: ignore[method-assign]
        other.info = lambda: (asked.append("info"), plain_info())[1]  # type: ignore[method-assign]
        agent._announced = {d.id: d.info() for d in agent.devices.values()}
        asked.clear()
        device(agent, "p1")._set(DeviceState.PRINTING, "j1")
        assert asked == [], "one device's status needs nothing of another device"
        other.info = lambda: DeviceInfo(id="p2", kind="serial_gcode", firmware="Recorder 2.0")  # type: ignore[method-assign]
        device(agent, "p1")._set(DeviceState.IDLE, None)
        assert asked == [], "another device's new info waits for that device's own status"
        other._set(DeviceState.PRINTING, "j2")
        assert "status" in asked, "a changed info is announced with a whole birth"
        assert agent._announced["p2"].firmware == "Recorder 2.0"
    finally:
        agent.outbox.close()
