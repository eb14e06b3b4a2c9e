"""Every message that crosses MQTT, as pydantic models.

One envelope carries every body; bodies are told apart by their ``type``
field (a discriminated union), so a decoder never guesses. Models are
strict about unknown fields so that a typo in a script fails loudly instead
of being ignored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="lower-case hex SHA-256")]
Ident = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="identifier usable as an MQTT topic level",
    ),
]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class Model(BaseModel):
    # Validators are built on a model's first use: a process that sends a handful of the
    # message types (an agent's serial driver) does not pay memory for all of them.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- state


class DeviceState(StrEnum):
    DISCONNECTED = "disconnected"
    IDLE = "idle"
    PRINTING = "printing"
    PAUSED = "paused"
    ERROR = "error"


class Heater(Model):
    actual: float
    target: float | None = None


class Gpu(Model):
    index: int
    name: str
    vram_mb: int


class RenderCapabilities(Model):
    """What a render node can do; the hub matches tasks against it."""

    blender_version: str
    engines: list[str]
    devices: list[str] = Field(description="CPU, CUDA, OPTIX, HIP… usable with --cycles-device")
    gpus: list[Gpu] = Field(default_factory=list)


class DeviceInfo(Model):
    id: Ident
    kind: Literal["serial_gcode", "octoprint", "moonraker", "prusalink", "bambu", "blender"]
    model: str | None = Field(None, description="machine model, e.g. 'prusa-mk3s'")
    firmware: str | None = Field(None, description="firmware name and version as the device reports it")
    capabilities: list[str] = Field(default_factory=list)
    render: RenderCapabilities | None = None


class HubState(Model):
    type: Literal["hub_state"] = "hub_state"
    online: bool
    version: str = ""
    http_url: str | None = Field(None, description="where agents fetch job files")


class NodeState(Model):
    """Birth (online, every connect) and death (offline, the Last Will)."""

    type: Literal["node_state"] = "node_state"
    online: bool
    agent_version: str = ""
    hostname: str = ""
    devices: list[DeviceInfo] = Field(default_factory=list)


class DeviceStatus(Model):
    """Retained snapshot of one device, republished on every state change."""

    type: Literal["device_status"] = "device_status"
    device: Ident
    state: DeviceState
    job_id: str | None = None
    progress: Fraction | None = None
    temperatures: dict[str, Heater] = Field(default_factory=dict)
    error: str | None = Field(None, description="the firmware's own words when state is error")


class Telemetry(Model):
    """Frequent, lossy (QoS 0) readings of one device."""

    type: Literal["telemetry"] = "telemetry"
    device: Ident
    temperatures: dict[str, Heater] = Field(default_factory=dict)
    progress: Fraction | None = None
    lines_sent: int | None = None


class GpuReading(Model):
    index: int
    util_pct: float | None = None
    mem_used_mb: float | None = None
    mem_total_mb: float | None = None
    temp_c: float | None = None
    power_w: float | None = None


class HostMetrics(Model):
    type: Literal["host_metrics"] = "host_metrics"
    cpu_pct: float
    mem_pct: float
    disk_pct: float
    load1: float
    cpu_temp_c: float | None = None
    uptime_s: float | None = None
    gpus: list[GpuReading] = Field(default_factory=list)


# --------------------------------------------------------------------------- events


class JobStarted(Model):
    type: Literal["job_started"] = "job_started"
    device: Ident
    job_id: str
    lines_total: int | None = None


class JobProgress(Model):
    type: Literal["job_progress"] = "job_progress"
    device: Ident
    job_id: str
    progress: Fraction
    lines_done: int = 0


class JobPaused(Model):
    type: Literal["job_paused"] = "job_paused"
    device: Ident
    job_id: str
    reason: str = ""


class JobResumed(Model):
    type: Literal["job_resumed"] = "job_resumed"
    device: Ident
    job_id: str


class JobCompleted(Model):
    type: Literal["job_completed"] = "job_completed"
    device: Ident
    job_id: str
    duration_s: float
    lines: int
    resends: int = 0
    extruded_mm: float | None = Field(None, description="filament pushed by the extruder(s), for stock and actual cost")


class JobFailed(Model):
    type: Literal["job_failed"] = "job_failed"
    device: Ident
    job_id: str
    reason: str
    cancelled: bool = False


class DeviceError(Model):
    type: Literal["device_error"] = "device_error"
    device: Ident
    message: str = Field(description="what went wrong, in the firmware's own words where it said")
    job_id: str | None = Field(None, description="the job running when it happened, if any")
    command: str | None = Field(None, description="the command the firmware refused, when it refused one")


class RenderProgress(Model):
    type: Literal["render_progress"] = "render_progress"
    device: Ident
    task_id: str
    frame: int
    samples_done: int | None = None
    samples_total: int | None = None
    remaining_s: float | None = None
    mem_mb: float | None = None


class FrameRendered(Model):
    """One frame saved and uploaded to the hub (identified by its hash)."""

    type: Literal["frame_rendered"] = "frame_rendered"
    device: Ident
    task_id: str
    frame: int
    render_s: float
    output_sha256: Sha256
    output_name: str


class RenderTaskCompleted(Model):
    type: Literal["render_task_completed"] = "render_task_completed"
    device: Ident
    task_id: str
    frames: list[int]
    duration_s: float


class RenderTaskFailed(Model):
    type: Literal["render_task_failed"] = "render_task_failed"
    device: Ident
    task_id: str
    reason: str
    output_tail: list[str] = Field(default_factory=list, description="Blender's last output lines")
    cancelled: bool = False
    timed_out: bool = False


class ConsoleOutput(Model):
    """What the firmware answered to a SendGcode, in its own words."""

    type: Literal["console_output"] = "console_output"
    device: Ident
    command_id: str
    lines: list[str] = Field(max_length=500)


class CommandAck(Model):
    """The agent's answer to a command: accepted, rejected (with why) or done."""

    type: Literal["command_ack"] = "command_ack"
    command_id: str
    status: Literal["accepted", "rejected", "done", "failed"]
    reason: str = ""


# --------------------------------------------------------------------------- commands


class _Command(Model):
    command_id: str = Field(
        min_length=1,
        max_length=128,
        description="idempotency key: a command seen twice is acted on once",
    )
    device: Ident


class StartJob(_Command):
    type: Literal["start_job"] = "start_job"
    job_id: str
    file_sha256: Sha256
    file_size: int = Field(ge=0)
    file_url: str = Field(description="absolute URL the agent GETs the file from")


class StartRender(_Command):
    """Render frames frame_start..frame_end of a .blend (resources packed) and upload each frame."""

    type: Literal["start_render"] = "start_render"
    task_id: str
    job_id: str
    blend_sha256: Sha256
    blend_size: int = Field(ge=0)
    blend_url: str
    upload_url: str = Field(description="POST each output here (multipart 'file', with task_id and frame)")
    frame_start: int
    frame_end: int
    engine: Literal["CYCLES", "BLENDER_EEVEE", "BLENDER_EEVEE_NEXT", "BLENDER_WORKBENCH"] = "CYCLES"
    cycles_device: Literal["CPU", "CUDA", "OPTIX", "HIP", "ONEAPI", "METAL"] = "CPU"
    samples: int | None = Field(None, ge=1)
    resolution_pct: int | None = Field(None, ge=1, le=400)
    file_format: Literal["PNG", "JPEG", "OPEN_EXR", "TIFF"] = "PNG"
    timeout_s: float = Field(3600.0, gt=0)
    camera: str | None = Field(None, min_length=1, max_length=63, description="render through this camera object")
    denoise: bool | None = Field(None, description="Cycles denoising on/off; None keeps the file's setting")
    threads: int | None = Field(None, ge=1, le=1024, description="Blender render threads; None uses all cores")


# Printable ASCII without '*': the host frames each line with its own checksum.
GcodeLine = Annotated[str, Field(min_length=1, max_length=96, pattern=r"^[\x20-\x29\x2b-\x7e]+$")]


class SendGcode(_Command):
    """Operator console: run these lines; the firmware's replies come back as ConsoleOutput."""

    type: Literal["send_gcode"] = "send_gcode"
    lines: list[GcodeLine] = Field(min_length=1, max_length=50)


class PauseJob(_Command):
    type: Literal["pause_job"] = "pause_job"


class ResumeJob(_Command):
    type: Literal["resume_job"] = "resume_job"


class CancelJob(_Command):
    type: Literal["cancel_job"] = "cancel_job"
    job_id: str | None = None


class EmergencyStop(_Command):
    type: Literal["emergency_stop"] = "emergency_stop"


# --------------------------------------------------------------------------- scripts


class Request(Model):
    """A script's request to the hub over MQTT; answered on its response topic."""

    type: Literal["request"] = "request"
    correlation_id: str = Field(min_length=1, max_length=128)
    method: Literal["submit_job", "get_job", "list_jobs", "cancel_job"]
    params: dict[str, Any] = Field(default_factory=dict)


class Response(Model):
    type: Literal["response"] = "response"
    correlation_id: str
    ok: bool
    result: Any = None
    error: str | None = None


Event = (
    JobStarted | JobProgress | JobPaused | JobResumed | JobCompleted | JobFailed | DeviceError
    | RenderProgress | FrameRendered | RenderTaskCompleted | RenderTaskFailed | ConsoleOutput | CommandAck
)
Command = StartJob | StartRender | SendGcode | PauseJob | ResumeJob | CancelJob | EmergencyStop
EVENT_TYPES: tuple[type[Model], ...] = get_args(Event)
COMMAND_TYPES: tuple[type[Model], ...] = get_args(Command)

Body = Annotated[
    HubState | NodeState | DeviceStatus | Telemetry | HostMetrics | Event | Command | Request | Response,
    Field(discriminator="type"),
]


class Envelope(Model):
    """The one wrapper around every message on the wire."""

    v: Literal[1] = PROTOCOL_VERSION
    id: str = Field(default_factory=lambda: uuid.uuid4().hex, description="unique message id")
    ts: AwareDatetime = Field(default_factory=utcnow, description="UTC time the sender made it")
    sender: Ident
    seq: int | None = Field(
        None,
        ge=1,
        description="per-sender sequence number of QoS 1 traffic; receivers de-duplicate on (sender, seq)",
    )
    body: Body
