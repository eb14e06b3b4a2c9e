"""A Blender render node: the ``Device`` that renders frame ranges and delivers each frame to the hub.

One render task is one ``BlenderRun``. Each frame is uploaded as soon as
Blender saves it, while Blender goes on with the next, and is reported
(``FrameRendered``) only once the hub has it. A task ends with
``RenderTaskCompleted`` when every frame is delivered, or with
``RenderTaskFailed`` in Blender's words, or naming the upload that could not
be delivered. The shared state enum has no "rendering": a busy render node is
``printing``, with the task as its job.

The node hands this driver its work folder and the hub token (``link_node``)
before ``open()``; frames wait there only until they are uploaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import shutil
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from agent.render.blender_cli import (
    BlenderRun,
    BlenderUnavailable,
    FrameProgress,
    FrameSaved,
    FrameStarted,
    Outcome,
    RunResult,
)
from agent.render.capabilities import blender_capabilities
from agent.render.command import RenderSpec
from agent.render.outputs import sha256_file
from agent.render.upload import FrameUploader, Retry, UploadFailed
from protocol.messages import (
    DeviceError,
    DeviceInfo,
    DeviceState,
    DeviceStatus,
    FrameRendered,
    Gpu,
    RenderCapabilities,
    RenderProgress,
    RenderTaskCompleted,
    RenderTaskFailed,
    StartRender,
    Telemetry,
)

from .base import CommandRejected, Device, Emitter

log = structlog.get_logger("farmhand.agent.blender")

# Progress events are QoS 1 and spooled on disk: one a second is plenty for a person watching.
PROGRESS_EVERY_S = 1.0
STOP_GRACE_S = 5.0
PROBE_TIMEOUT_S = 60.0
TAIL_LINES = 20
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(eq=False)
class _Task:
    command: StartRender
    run: BlenderRun
    folder: Path
    started: float
    uploads: asyncio.Queue[FrameSaved | None] = field(default_factory=asyncio.Queue)
    saved: int = 0
    current: FrameProgress | None = None
    delivered: list[int] = field(default_factory=list)
    failure: str | None = None  # an upload that could not be delivered ended the task
    stop_reason: str | None = None  # someone stopped it: "cancelled", "emergency stop"…
    last_event: float = float("-inf")
    last_telemetry: float = float("-inf")
    supervisor: asyncio.Task[None] | None = None
    uploader: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.command.task_id

    @property
    def frames_total(self) -> int:
        return self.command.frame_end - self.command.frame_start + 1


class BlenderDevice(Device):
    def __init__(
        self,
        device_id: str,
        emitter: Emitter,
        *,
        blender: str = "blender",
        work_dir: Path | None = None,
        token: str | None = None,
        max_task_s: float | None = None,
        poll_interval_s: float = 2.0,
        retry: Retry = Retry(),
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        super().__init__(device_id, emitter)
        self.blender = blender
        self.work_dir = work_dir
        self.max_task_s = max_task_s
        self.poll_interval_s = poll_interval_s
        self.stop_grace_s = stop_grace_s
        self._token = token
        self._tls: ssl.SSLContext | None = None
        self._retry = retry
        self._uploader: FrameUploader | None = None
        self._caps: dict[str, Any] | None = None
        self._render: RenderCapabilities | None = None
        self._state = DeviceState.DISCONNECTED
        self._error: str | None = None
        self._task: _Task | None = None
        self._log = log.bind(device=device_id)

    def link_node(self, work_dir: Path, token: str | None, tls: ssl.SSLContext | None = None) -> None:
        """Where this device keeps frames until they are uploaded, the token the hub wants and its TLS."""
        self.work_dir = work_dir
        self._token = token
        self._tls = tls

    # ------------------------------------------------------------------ Device

    def info(self) -> DeviceInfo:
        firmware = f"Blender {self._caps['version_string']}" if self._caps else None
        return DeviceInfo(id=self.id, kind="blender", firmware=firmware, render=self._render)

    def status(self) -> DeviceStatus:
        task = self._task
        return DeviceStatus(device=self.id, state=self._state, job_id=task.id if task else None,
                            progress=_progress(task) if task else None, error=self._error)

    async def open(self) -> None:
        """Asks Blender what it can do (a second or so); the birth message carries the answer."""
        if self._state is DeviceState.IDLE or self._task is not None:
            return
        try:
            self._caps = await blender_capabilities(self.blender, timeout_s=PROBE_TIMEOUT_S)
            self._render = render_capabilities(self._caps)
        except (BlenderUnavailable, OSError, ValueError, KeyError) as exc:
            message = str(exc) if isinstance(exc, BlenderUnavailable) else f"cannot ask Blender: {exc}"
            self._log.error("blender_unavailable", error=message)
            self.emitter.event(DeviceError(device=self.id, message=message))
            self._set_state(DeviceState.ERROR, message)
            return
        if self.work_dir is not None:
            # Frames left by an agent that died mid-task: that task is gone, its frames with it.
            await asyncio.to_thread(shutil.rmtree, self.work_dir, True)
        self._uploader = FrameUploader(token=self._token, retry=self._retry, tls=self._tls)
        self._log.info("render_node_ready", blender=self._caps["blender"], version=self._caps["version"],
                       devices=self._render.devices if self._render else None)
        self._set_state(DeviceState.IDLE)

    async def close(self) -> None:
        if self._task is not None:
            await self._stop(self._task, "the agent stopped", self.stop_grace_s)
        if self._uploader is not None:
            await self._uploader.close()
            self._uploader = None
        if self._state is not DeviceState.ERROR:
            self._set_state(DeviceState.DISCONNECTED)

    async def start_job(self, job_id: str, path: Path) -> None:
        raise CommandRejected(f"device {self.id} is a render node: it renders .blend files, it cannot print")

    async def pause(self) -> None:
        raise CommandRejected("Blender cannot pause a render mid-frame; cancel the task and send it again")

    async def resume(self) -> None:
        raise CommandRejected("Blender cannot pause a render mid-frame, so there is nothing to resume")

    async def cancel(self) -> None:
        task = self._task
        if task is None:
            raise CommandRejected(f"device {self.id} is not rendering anything to cancel")
        await self._stop(task, "cancelled", self.stop_grace_s)

    async def emergency_stop(self) -> None:
        # Nothing physical moves on a render node: an idle one has nothing to stop.
        if self._task is not None:
            await self._stop(self._task, "emergency stop", 0.0)

    # ------------------------------------------------------------------ rendering

    async def start_render(self, command: StartRender, blend: Path) -> None:
        """Start Blender on ``blend``; returns once it runs. Raises CommandRejected."""
        self._check(command)
        if self.work_dir is None or self._uploader is None:
            raise RuntimeError(f"device {self.id} has no work folder: link_node() and open() come first")
        folder = self.work_dir / _folder_name(command.task_id)
        spec = RenderSpec(blend, str(folder / "frame_####"), engine=command.engine, file_format=command.file_format,
                          frame_start=command.frame_start, frame_end=command.frame_end,
                          device=command.cycles_device, samples=command.samples,
                          resolution_pct=command.resolution_pct, threads=command.threads,
                          camera=command.camera, denoise=command.denoise)
        timeout = min(command.timeout_s, self.max_task_s) if self.max_task_s else command.timeout_s
        try:
            run = BlenderRun(spec, blender=self.blender, timeout_s=timeout, tail_lines=TAIL_LINES,
                             stop_grace_s=self.stop_grace_s)
        except ValueError as exc:
            raise CommandRejected(f"bad render settings: {exc}") from None
        task = _Task(command, run, folder, time.monotonic())
        self._task = task  # taken before the first await: a second start sees a busy node
        try:
            # A retried task starts clean: a frame from an earlier attempt is no frame of this one.
            await asyncio.to_thread(_fresh_folder, folder)
            await run.start()
        except (BlenderUnavailable, OSError) as exc:
            self._task = None
            await asyncio.to_thread(shutil.rmtree, folder, True)
            raise CommandRejected(str(exc)) from None
        task.supervisor = asyncio.create_task(self._supervise(task), name=f"render {self.id} {task.id}")
        self._log.info("render_task_started", task_id=task.id, job_id=command.job_id, pid=run.pid,
                       frames=f"{command.frame_start}-{command.frame_end}", engine=command.engine,
                       cycles_device=command.cycles_device, timeout_s=timeout)
        self._set_state(DeviceState.PRINTING)

    def _check(self, command: StartRender) -> None:
        if self._state is DeviceState.ERROR:
            raise CommandRejected(f"device {self.id} cannot render: {self._error}")
        if self._task is not None:
            raise CommandRejected(f"device {self.id} is busy rendering task {self._task.id}")
        if self._state is not DeviceState.IDLE or self._render is None:
            raise CommandRejected(f"device {self.id} is {self._state.value}, not ready to render")
        render = self._render
        if command.engine not in render.engines:
            raise CommandRejected(f"{command.engine} not available in Blender {render.blender_version} "
                                  f"(engines: {', '.join(render.engines)})")
        if command.cycles_device not in render.devices:
            raise CommandRejected(f"{command.cycles_device} not available on this node "
                                  f"(devices: {', '.join(render.devices)})")

    async def _supervise(self, task: _Task) -> None:
        uploader = task.uploader = asyncio.create_task(self._deliver(task), name=f"upload {self.id} {task.id}")
        try:
            async for event in task.run:
                if isinstance(event, FrameProgress):
                    self._progressed(task, event)
                elif isinstance(event, FrameSaved):
                    task.saved += 1
                    task.current = None
                    task.uploads.put_nowait(event)
                elif isinstance(event, FrameStarted):
                    task.current = None
            result = await task.run.wait()
            if task.stop_reason is None:
                task.uploads.put_nowait(None)  # every saved frame is delivered before the task ends
                await asyncio.wait([uploader])  # a cancel meanwhile cancels it; that is no error here
            self._finish(task, result)
        except Exception as exc:
            self._log.exception("render_task_crashed", task_id=task.id)
            await task.run.cancel(0.0)  # whatever broke here, Blender must not render on unwatched
            self._end(task, RenderTaskFailed(device=self.id, task_id=task.id,
                                             reason=f"agent error: {type(exc).__name__}: {exc}"))
        finally:
            uploader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await uploader
            await asyncio.to_thread(shutil.rmtree, task.folder, True)
            self._task = None
            self._set_state(DeviceState.IDLE)

    async def _deliver(self, task: _Task) -> None:
        """Uploads frames in the order Blender saved them; the first one that cannot go ends the task."""
        assert self._uploader is not None
        while (saved := await task.uploads.get()) is not None:
            try:
                sha256 = await sha256_file(saved.path)
                await self._uploader.upload(task.command.upload_url, task_id=task.id, frame=saved.frame,
                                            path=saved.path, sha256=sha256)
            except (UploadFailed, OSError) as exc:
                task.failure = str(exc) if isinstance(exc, UploadFailed) else f"cannot read {saved.path}: {exc}"
                self._log.error("render_upload_failed", task_id=task.id, frame=saved.frame, error=task.failure)
                await task.run.cancel(self.stop_grace_s)
                return
            task.delivered.append(saved.frame)
            self.emitter.event(FrameRendered(device=self.id, task_id=task.id, frame=saved.frame,
                                             render_s=round(saved.render_s, 3), output_sha256=sha256,
                                             output_name=saved.path.name))
            # Delivered: a long task keeps one frame on disk, not all of them.
            saved.path.unlink(missing_ok=True)

    def _progressed(self, task: _Task, event: FrameProgress) -> None:
        task.current = event
        now = time.monotonic()
        if now - task.last_event >= PROGRESS_EVERY_S:
            task.last_event = now
            self.emitter.event(RenderProgress(device=self.id, task_id=task.id, frame=event.frame,
                                              samples_done=event.samples_done, samples_total=event.samples_total,
                                              remaining_s=event.remaining_s, mem_mb=event.mem_mb))
        if now - task.last_telemetry >= self.poll_interval_s:
            task.last_telemetry = now
            self.emitter.telemetry(Telemetry(device=self.id, progress=_progress(task)))

    def _finish(self, task: _Task, result: RunResult) -> None:
        tail = result.tail[-TAIL_LINES:]
        if task.failure is not None:
            end: RenderTaskCompleted | RenderTaskFailed = RenderTaskFailed(
                device=self.id, task_id=task.id, reason=task.failure)
        elif task.stop_reason is not None:
            end = RenderTaskFailed(device=self.id, task_id=task.id, reason=task.stop_reason, cancelled=True)
        elif result.ok:
            end = RenderTaskCompleted(device=self.id, task_id=task.id, frames=sorted(task.delivered),
                                      duration_s=round(time.monotonic() - task.started, 3))
        else:
            end = RenderTaskFailed(device=self.id, task_id=task.id, reason=result.error or "Blender failed",
                                   output_tail=tail, timed_out=result.outcome is Outcome.TIMED_OUT)
        self._end(task, end)

    def _end(self, task: _Task, end: RenderTaskCompleted | RenderTaskFailed) -> None:
        self.emitter.event(end)
        self._log.info("render_task_ended", task_id=task.id, type=end.type, frames=len(task.delivered),
                       reason=getattr(end, "reason", None))

    async def _stop(self, task: _Task, reason: str, grace_s: float) -> None:
        """Stops Blender and returns once the task's end is spooled (so it precedes the command's ack)."""
        if task.stop_reason is None and task.failure is None:
            task.stop_reason = reason
        self._log.info("render_task_stopping", task_id=task.id, reason=reason, grace_s=grace_s)
        if task.uploader is not None:
            task.uploader.cancel()  # frames not yet delivered belong to the task being stopped
        await task.run.cancel(grace_s)
        if task.supervisor is not None:
            await asyncio.shield(task.supervisor)

    def _set_state(self, state: DeviceState, error: str | None = None) -> None:
        self._state = state
        self._error = error
        self.emitter.status(self.status())


def render_capabilities(caps: dict[str, Any]) -> RenderCapabilities:
    """The protocol's view of ``blender_capabilities()``: --cycles-device choices are the CPU and the GPU back-ends
    Cycles found a GPU for."""
    devices = ["CPU", *dict.fromkeys(gpu["type"] for gpu in caps["cycles_gpus"])]
    gpus = [Gpu(index=d["index"], name=d["name"], vram_mb=int(d["vram_mb"] or 0))
            for d in caps["devices"] if d["type"] == "GPU"]
    return RenderCapabilities(blender_version=caps["version"], engines=list(caps["engines"]), devices=devices,
                              gpus=gpus)


def _progress(task: _Task) -> float:
    done = float(task.saved)
    current = task.current
    if current is not None and current.samples_total:
        done += current.samples_done / current.samples_total
    return min(1.0, done / task.frames_total)


def _folder_name(task_id: str) -> str:
    # A task id comes from the hub: never let it name a path outside the work folder,
    # nor carry Blender's frame placeholder '#'.
    if _SAFE_NAME.fullmatch(task_id):
        return task_id
    return "task-" + hashlib.sha256(task_id.encode()).hexdigest()[:16]


def _fresh_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
