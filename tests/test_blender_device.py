"""The Blender render device: real Blender, a real HTTP upload server, events through a real spool.

Renders use the tiny scene of tests/render_scene.py (64x48 pixels, 2 Cycles
samples on the CPU): about a second per task, most of it Blender starting.
"""

from __future__ import annotations

import hashlib
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.config import AgentConfig, DeviceConfig
from agent.devices.base import CommandRejected
from agent.devices.blender import BlenderDevice, _folder_name
from agent.metrics import gpu_readings
from agent.node import Agent
from agent.render.upload import Retry
from agent.event_outbox import EventOutbox
from protocol import codec, topics
from protocol.messages import (
    DeviceState,
    DeviceStatus,
    Event,
    GpuReading,
    StartRender,
    Telemetry,
)

from .agent_support import FileServer, Listener, wait_for
from .render_scene import blender_or_skip, make_scene

TOKEN = "s3cret"
FAST_RETRY = Retry(attempts=3, initial_s=0.05, cap_s=0.1)


# --------------------------------------------------------------------------- test kit


class SpoolEmitter:
    """The device's emitter over a real spool file: what a test reads back is what the agent would send."""

    def __init__(self, path: Path) -> None:
        self.spool = EventOutbox(path, "test-node")
        self.statuses: list[DeviceStatus] = []
        self.telemetry_seen: list[Telemetry] = []

    def event(self, body: Event) -> None:
        self.spool.append(topics.node_event("test-node"), body)

    def status(self, status: DeviceStatus) -> None:
        self.statuses.append(status)

    def telemetry(self, telemetry: Telemetry) -> None:
        self.telemetry_seen.append(telemetry)

    def events(self, type: str | None = None) -> list[Any]:
        bodies = [codec.decode(payload).body for _, _, payload in self.spool.rows()]
        return [b for b in bodies if type is None or b.type == type]


@dataclass(frozen=True)
class Received:
    task_id: str
    frame: int
    sha256: str
    name: str
    data: bytes


class UploadServer:
    """A real HTTP endpoint taking frames as the hub's does; it can fail the first uploads, or all of them."""

    def __init__(self, *, token: str | None = TOKEN, fail_first: int = 0, always: int | None = None) -> None:
        self.token = token
        self.fail_first = fail_first
        self.always = always
        self.attempts = 0
        self.received: list[Received] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _upload(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            await request.read()
            return web.Response(status=401, text="bad token")
        if self.always is not None or self.attempts <= self.fail_first:
            await request.read()  # answer after the body, as a real server does: a reset is another story
            return web.Response(status=self.always or 500, text="the frame store is down")
        form = await request.post()
        file = form["file"]
        assert isinstance(file, web.FileField)
        self.received.append(Received(str(form["task_id"]), int(str(form["frame"])), str(form["sha256"]),
                                      file.filename, file.file.read()))
        return web.json_response({"stored": True})

    async def __aenter__(self) -> UploadServer:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/renders/upload", self._upload)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/renders/upload"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    blender = blender_or_skip()
    return make_scene(tmp_path_factory.mktemp("scene") / "cube.blend", blender=blender)


@pytest.fixture
def emitter(tmp_path: Path) -> Iterator[SpoolEmitter]:
    emitter = SpoolEmitter(tmp_path / "spool.sqlite3")
    yield emitter
    emitter.spool.close()


async def open_device(emitter: SpoolEmitter, work_dir: Path, **options: Any) -> BlenderDevice:
    options = {"blender": "blender", "token": TOKEN, "retry": FAST_RETRY, **options}
    device = BlenderDevice("r1", emitter, work_dir=work_dir, **options)
    await device.open()
    return device


@pytest.fixture
async def device(emitter: SpoolEmitter, tmp_path: Path) -> AsyncIterator[BlenderDevice]:
    blender_or_skip()
    device = await open_device(emitter, tmp_path / "work")
    yield device
    await device.close()


def render_command(blend: Path, upload_url: str, *, frames: tuple[int, int] = (1, 3), blend_url: str = "",
                   **overrides: Any) -> StartRender:
    content = blend.read_bytes() if blend.is_file() else b""
    fields: dict[str, Any] = {
        "command_id": uuid.uuid4().hex, "device": "r1", "task_id": f"task-{uuid.uuid4().hex[:8]}",
        "job_id": "job-1", "blend_sha256": hashlib.sha256(content).hexdigest(), "blend_size": len(content),
        "blend_url": blend_url or "http://hub.invalid/unused", "upload_url": upload_url,
        "frame_start": frames[0], "frame_end": frames[1], "samples": 2,
    }
    return StartRender(**{**fields, **overrides})


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def idle(device: BlenderDevice) -> bool:
    return device.status().state is DeviceState.IDLE


def _live_group_members(pgid: int) -> list[int]:
    """Processes of a group that still run (a killed one left as a zombie does not)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def blender_pids(marker: Path) -> list[int]:
    """Running processes whose command line names ``marker`` (Blender's output folder)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(marker).encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return [p for p in pids if _live_group_members(p)]


# --------------------------------------------------------------------------- rendering


@pytest.mark.integration
async def test_a_task_renders_uploads_and_reports_each_frame(
    device: BlenderDevice, emitter: SpoolEmitter, scene: Path, tmp_path: Path
) -> None:
    async with UploadServer() as server:
        cmd = render_command(scene, server.url, frames=(1, 3))
        await device.start_render(cmd, scene)
        assert device.status().state is DeviceState.PRINTING and device.status().job_id == cmd.task_id
        await wait_for(lambda: idle(device), timeout=30, what="the task to end")

    events = emitter.events()
    assert events[0].type == "render_progress" and events[0].task_id == cmd.task_id
    assert events[-1].type == "render_task_completed", events[-1]
    assert events[-1].frames == [1, 2, 3] and events[-1].duration_s > 0
    rendered = [e for e in events if e.type == "frame_rendered"]
    assert [e.frame for e in rendered] == [1, 2, 3]
    # What the events promise is what the hub received, byte for byte.
    assert [(r.task_id, r.frame, r.sha256, r.name) for r in server.received] == [
        (cmd.task_id, e.frame, e.output_sha256, e.output_name) for e in rendered
    ]
    for r in server.received:
        assert hashlib.sha256(r.data).hexdigest() == r.sha256
        assert r.data.startswith(b"\x89PNG")
    assert [r.name for r in server.received] == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
    assert all(e.render_s > 0 for e in rendered)
    # Only progress events come before the first frame, and the task ended last.
    assert {e.type for e in events[: events.index(rendered[0])]} == {"render_progress"}
    # Delivered frames leave no trace on the node's disk.
    assert list((tmp_path / "work").iterdir()) == []
    assert [s.state for s in emitter.statuses][-2:] == [DeviceState.PRINTING, DeviceState.IDLE]


@pytest.mark.integration
@pytest.mark.parametrize(("stop", "reason"), [("cancel", "cancelled"), ("emergency_stop", "emergency stop")])
async def test_stopping_a_task_ends_blender_and_reports_it_cancelled(
    device: BlenderDevice, emitter: SpoolEmitter, scene: Path, tmp_path: Path, stop: str, reason: str
) -> None:
    async with UploadServer() as server:
        # Thousands of frames at many samples: it runs until stopped.
        cmd = render_command(scene, server.url, frames=(1, 5000), samples=512)
        await device.start_render(cmd, scene)
        await wait_for(lambda: emitter.events("render_progress"), timeout=20, what="Blender to render")
        (pgid,) = blender_pids(tmp_path / "work")

        await getattr(device, stop)()

        # The end is spooled before the stop returns (and so before its command's ack).
        end = emitter.events()[-1]
        assert end.type == "render_task_failed" and end.cancelled and not end.timed_out
        assert end.reason == reason and end.task_id == cmd.task_id
        await wait_for(lambda: not _live_group_members(pgid), timeout=5, what="Blender's process group to end")
        assert idle(device) and device.status().job_id is None
        assert not emitter.events("render_task_completed")


@pytest.mark.integration
async def test_frames_survive_an_upload_server_that_fails_twice(
    device: BlenderDevice, emitter: SpoolEmitter, scene: Path
) -> None:
    async with UploadServer(fail_first=2) as server:
        await device.start_render(render_command(scene, server.url, frames=(1, 2)), scene)
        await wait_for(lambda: idle(device), timeout=30, what="the task to end")

    assert server.attempts == 4  # two refused, then one per frame
    assert [r.frame for r in server.received] == [1, 2]
    assert [e.frame for e in emitter.events("frame_rendered")] == [1, 2]
    assert emitter.events()[-1].type == "render_task_completed"


@pytest.mark.integration
@pytest.mark.parametrize(
    ("server_options", "words"),
    [
        ({"always": 503}, "failed after 3 attempts: HTTP 503 Service Unavailable: the frame store is down"),
        ({"token": "another-token"}, "failed: HTTP 401 Unauthorized: bad token"),
        (None, "failed after 3 attempts: ConnectFailed: cannot connect to 127.0.0.1"),
    ],
    ids=["5xx", "refused-token", "no-server"],
)
async def test_a_frame_that_cannot_be_delivered_fails_the_task_naming_why(
    device: BlenderDevice, emitter: SpoolEmitter, scene: Path, tmp_path: Path,
    server_options: dict[str, Any] | None, words: str,
) -> None:
    if server_options is None:
        url = closed_port_url() + "/renders/upload"  # nothing listens there
        await device.start_render(render_command(scene, url), scene)
        await wait_for(lambda: idle(device), timeout=30, what="the task to end")
    else:
        async with UploadServer(**server_options) as server:
            url = server.url
            await device.start_render(render_command(scene, url), scene)
            await wait_for(lambda: idle(device), timeout=30, what="the task to end")
        assert server.received == []

    end = emitter.events()[-1]
    assert end.type == "render_task_failed" and not end.cancelled
    assert end.reason.startswith(f"upload of frame_0001.png (frame 1) to {url} ")
    assert words in end.reason
    assert not emitter.events("frame_rendered")
    # The task is over: Blender does not go on rendering frames nobody can receive.
    assert blender_pids(tmp_path / "work") == []


@pytest.mark.integration
async def test_a_broken_blend_fails_the_task_in_blenders_words(
    device: BlenderDevice, emitter: SpoolEmitter, tmp_path: Path
) -> None:
    blend = tmp_path / "broken.blend"
    blend.write_bytes(b"not a blend file\n")
    async with UploadServer() as server:
        await device.start_render(render_command(blend, server.url), blend)
        await wait_for(lambda: idle(device), timeout=30, what="the task to end")
    end = emitter.events()[-1]
    assert end.type == "render_task_failed" and not end.cancelled and not end.timed_out
    assert "File format is not supported" in end.reason
    assert any("File format is not supported" in line for line in end.output_tail)


@pytest.mark.integration
async def test_the_node_limit_caps_a_tasks_timeout(emitter: SpoolEmitter, scene: Path, tmp_path: Path) -> None:
    blender_or_skip()
    device = await open_device(emitter, tmp_path / "work", max_task_s=1.0)
    try:
        async with UploadServer() as server:
            await device.start_render(render_command(scene, server.url, frames=(1, 5000), samples=512,
                                                     timeout_s=3600), scene)
            await wait_for(lambda: idle(device), timeout=20, what="the task to time out")
    finally:
        await device.close()
    end = emitter.events()[-1]
    assert end.type == "render_task_failed" and end.timed_out and not end.cancelled
    assert end.reason == "timed out after 1 s"


# --------------------------------------------------------------------------- refusals


@pytest.mark.integration
async def test_render_capabilities_are_in_the_device_info(device: BlenderDevice) -> None:
    info = device.info()
    assert info.kind == "blender" and info.render is not None
    assert info.firmware is not None and info.firmware.startswith("Blender ")
    assert "CYCLES" in info.render.engines and info.render.devices[0] == "CPU"
    assert info.render.blender_version.count(".") == 2
    assert idle(device)


@pytest.mark.integration
async def test_a_cycles_device_the_node_lacks_is_refused(
    device: BlenderDevice, emitter: SpoolEmitter, scene: Path, tmp_path: Path
) -> None:
    render = device.info().render
    assert render is not None
    lacking = next(d for d in ("OPTIX", "HIP", "CUDA") if d not in render.devices)
    cmd = render_command(scene, "http://127.0.0.1:9/up", cycles_device=lacking)
    with pytest.raises(CommandRejected) as err:
        await device.start_render(cmd, scene)
    assert str(err.value) == f"{lacking} not available on this node (devices: {', '.join(render.devices)})"
    assert idle(device) and emitter.events() == []
    assert blender_pids(tmp_path / "work") == []


@pytest.mark.integration
async def test_settings_blender_cannot_take_are_refused_before_it_starts(
    device: BlenderDevice, emitter: SpoolEmitter, scene: Path
) -> None:
    with pytest.raises(CommandRejected, match="bad render settings: file_format must be one of PNG"):
        await device.start_render(render_command(scene, "http://127.0.0.1:9/up", file_format="TIFF"), scene)
    with pytest.raises(CommandRejected, match="bad render settings: frame_end must be between 5"):
        await device.start_render(render_command(scene, "http://127.0.0.1:9/up", frames=(5, 4)), scene)
    assert idle(device) and emitter.events() == []


@pytest.mark.integration
async def test_a_busy_node_refuses_a_second_task(device: BlenderDevice, scene: Path) -> None:
    async with UploadServer() as server:
        first = render_command(scene, server.url, frames=(1, 5000), samples=512)
        await device.start_render(first, scene)
        with pytest.raises(CommandRejected, match=f"busy rendering task {first.task_id}"):
            await device.start_render(render_command(scene, server.url), scene)
        await device.cancel()


@pytest.mark.integration
async def test_print_and_pause_commands_are_refused_with_the_reason(device: BlenderDevice, tmp_path: Path) -> None:
    with pytest.raises(CommandRejected, match="is a render node"):
        await device.start_job("job-1", tmp_path / "part.gcode")
    with pytest.raises(CommandRejected, match="cannot pause a render mid-frame"):
        await device.pause()
    with pytest.raises(CommandRejected, match="nothing to resume"):
        await device.resume()
    with pytest.raises(CommandRejected, match="not rendering anything"):
        await device.cancel()
    await device.emergency_stop()  # an idle render node has nothing to stop, and that is no error
    assert idle(device)


async def test_a_missing_blender_puts_the_device_in_error(emitter: SpoolEmitter, tmp_path: Path) -> None:
    device = await open_device(emitter, tmp_path / "work", blender=str(tmp_path / "no-blender"))
    status = device.status()
    assert status.state is DeviceState.ERROR
    assert status.error is not None and "Blender not found" in status.error and "no-blender" in status.error
    assert device.info().render is None
    assert [e.message for e in emitter.events("device_error")] == [status.error]
    with pytest.raises(CommandRejected, match="cannot render: Blender not found"):
        await device.start_render(render_command(tmp_path / "x.blend", "http://127.0.0.1:9/up"), tmp_path / "x.blend")
    await device.close()
    assert device.status().state is DeviceState.ERROR  # still says why, not just "disconnected"


# --------------------------------------------------------------------------- config and metrics


def test_a_render_node_needs_no_port_but_a_printer_does() -> None:
    render = DeviceConfig(id="r1", driver="blender", blender="/opt/blender/blender", max_task_s=600)
    assert render.port is None and render.blender == "/opt/blender/blender"
    with pytest.raises(ValueError, match="port\n.*Field required: the serial_gcode driver needs the serial device"):
        DeviceConfig(id="p1", driver="serial_gcode")


@pytest.mark.integration
async def test_gpu_readings_become_host_metrics(tmp_path: Path) -> None:
    # A stand-in nvidia-smi printing what a two-GPU machine's does.
    exe = tmp_path / "nvidia-smi"
    exe.write_text(f"#!{sys.executable}\n"
                   "print('0, NVIDIA H100 80GB HBM3, 81559, 1024, 97, 61, 412.50')\n"
                   "print('1, NVIDIA RTX A4000, 16376, 0, 0, 35, [N/A]')\n")
    exe.chmod(0o755)
    assert await gpu_readings(str(exe)) == [
        GpuReading(index=0, util_pct=97, mem_used_mb=1024, mem_total_mb=81559, temp_c=61, power_w=412.5),
        GpuReading(index=1, util_pct=0, mem_used_mb=0, mem_total_mb=16376, temp_c=35, power_w=None),
    ]
    assert await gpu_readings("/bin/false") == []  # a broken driver: no GPUs, no crash


# --------------------------------------------------------------------------- the agent, end to end


@pytest.mark.integration
async def test_the_agent_renders_a_task_sent_over_mqtt(scene: Path, tmp_path: Path, mosquitto_url: str) -> None:
    node_id = f"test-{uuid.uuid4().hex[:12]}"
    config = AgentConfig.model_validate({
        "node_id": node_id, "mqtt": {"url": mosquitto_url, "keepalive_s": 5},
        "hub": {"token": TOKEN}, "storage": {"dir": tmp_path / "agent"},
        "devices": [{"id": "r1", "driver": "blender"}],
    })
    async with (Listener(mosquitto_url, f"farmhand/v1/node/{node_id}/#") as listener, FileServer(token=TOKEN) as files,
                UploadServer() as uploads):
        agent = Agent(config)
        await agent.start()
        try:
            await agent.session.wait_connected(10)
            blend_url, _, _ = files.add(scene.read_bytes())
            cmd = render_command(scene, uploads.url, frames=(1, 2), blend_url=blend_url)
            await listener.session.publish_confirmed(topics.node_command(node_id),
                                                     codec.encode(codec.make("hub", cmd)))
            event_topic = topics.node_event(node_id)
            await wait_for(lambda: listener.bodies(event_topic, "render_task_completed"), timeout=30,
                           what="the task to complete")
        finally:
            await agent.stop()
        try:
            acks = [b for b in listener.bodies(event_topic, "command_ack") if b.command_id == cmd.command_id]
            assert [a.status for a in acks] == ["accepted"]
            assert [b.frame for b in listener.bodies(event_topic, "frame_rendered")] == [1, 2]
            assert [r.frame for r in uploads.received] == [1, 2]
            (done,) = listener.bodies(event_topic, "render_task_completed")
            assert done.task_id == cmd.task_id and done.frames == [1, 2]
            birth = next(b for b in listener.bodies(topics.node_state(node_id)) if b.online)
            (info,) = birth.devices
            assert info.kind == "blender" and info.render is not None and "CPU" in info.render.devices
            states = [(s.state, s.job_id) for s in listener.bodies(topics.device_status(node_id, "r1"))]
            assert (DeviceState.PRINTING, cmd.task_id) in states
            # The frames waited in the node's storage only until the hub had them.
            assert list((tmp_path / "agent" / "devices" / "r1").iterdir()) == []
        finally:
            await listener.clear_retained(topics.node_state(node_id), topics.device_status(node_id, "r1"))


def test_task_ids_never_name_a_folder_outside_the_work_dir() -> None:
    assert _folder_name("task-7.a_b") == "task-7.a_b"
    for hostile in ("../../etc", "/abs", "a/b", "frame_####", "", "x" * 65):
        name = _folder_name(hostile)
        assert "/" not in name and "#" not in name and not name.startswith(".") and 0 < len(name) <= 64
    assert _folder_name("a/b") != _folder_name("a_b")

