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

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1

# Bounds on what one message may carry (protocol/README.md, "Limits"). A payload is
# refused whole past MAX_PAYLOAD_BYTES, an id or a count past its bound; free text
# (a firmware's error, a console line) is cut to its bound instead, so a long
# error never loses the event that carries it.
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_SEQ = 2**63 - 1
"""SQLite's largest integer: seq, counts and line numbers stay within it."""
TEXT_MAX = 2000
LINE_MAX = 256
NAME_MAX = 128
DEVICES_PER_NODE_MAX = 256

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
Ref = Annotated[str, Field(min_length=1, max_length=NAME_MAX, description="an id the hub or the agent issued")]
Count = Annotated[int, Field(ge=0, le=MAX_SEQ)]
Frame = Annotated[int, Field(ge=-1_048_574, le=1_048_574, description="a frame number within Blender's range")]


def _clipped(limit: int) -> Any:
    def clip(text: str) -> str:
        return text if len(text) <= limit else text[: limit - 1] + "…"

    return Annotated[str, AfterValidator(clip), Field(json_schema_extra={"maxLength": limit})]


Text = _clipped(TEXT_MAX)
"""Free text in someone's own words (a reason, an error): cut to TEXT_MAX characters."""
Line = _clipped(LINE_MAX)
"""One line of a firmware's or a program's output: cut to LINE_MAX characters."""
Name = _clipped(NAME_MAX)


class Model(BaseModel):
    # Validators are built on a model's first use: a process that sends a handful of the
    # message types (an agent's serial driver) does not pay memory for all of them.
    # NaN and infinities have no place in a reading, a duration or a price.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True, allow_inf_nan=False)


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
    model: Name | None = Field(None, description="machine model, e.g. 'prusa-mk3s'")
    firmware: Name | None = Field(None, description="firmware name and version as the device reports it")
    capabilities: list[Name] = Field(default_factory=list, max_length=256)
    render: RenderCapabilities | None = None


class HubState(Model):
    type: Literal["hub_state"] = "hub_state"
    online: bool
    version: str = ""
    http_url: str | None = Field(None, description="where agents fetch job files")


class DeviceJob(Model):
    """What one device runs as its node is born: the hub reconciles its jobs against this."""

    device: Ident
    state: DeviceState
    job_id: Ref | None = Field(None, description="the job it runs; None with state printing: one it cannot name")
    progress: Fraction | None = None


class NodeState(Model):
    """Birth (online, every connect) and death (offline, the Last Will)."""

    type: Literal["node_state"] = "node_state"
    online: bool
    agent_version: Name = ""
    hostname: Name = ""
    devices: list[DeviceInfo] = Field(default_factory=list, max_length=DEVICES_PER_NODE_MAX)
    jobs: list[DeviceJob] = Field(default_factory=list, max_length=DEVICES_PER_NODE_MAX,
                                  description="each device's current job at this birth")
    last_event_seq: int | None = Field(None, ge=1, le=MAX_SEQ, description="seq of the last event spooled before it")
    events_unsent: Count = Field(0, description="events spooled before this birth and not yet sent")


class LoadedMaterial(Model):
    """Filament the printer itself says it holds (a Bambu AMS tray, a Prusa's loaded filament)."""

    slot: str = Field(min_length=1, max_length=32, description="where it sits, e.g. 'ams0/1', 'external', 'T0'")
    material: str | None = Field(None, max_length=32, description="the printer's name for it, e.g. 'PLA'")
    color_hex: str | None = Field(None, pattern=r"^#[0-9a-f]{6}$")
    remaining_pct: float | None = Field(None, ge=0, le=100)


class DeviceStatus(Model):
    """Retained snapshot of one device, republished on every state change."""

    type: Literal["device_status"] = "device_status"
    device: Ident
    state: DeviceState
    job_id: Ref | None = None
    progress: Fraction | None = None
    remaining_s: float | None = Field(None, ge=0, description="the device's own estimate of the job's time left")
    temperatures: dict[str, Heater] = Field(default_factory=dict, max_length=32)
    materials: list[LoadedMaterial] = Field(default_factory=list, max_length=64)
    error: Text | None = Field(None, description="the firmware's own words when state is error")


class Telemetry(Model):
    """Frequent, lossy (QoS 0) readings of one device."""

    type: Literal["telemetry"] = "telemetry"
    device: Ident
    temperatures: dict[str, Heater] = Field(default_factory=dict, max_length=32)
    progress: Fraction | None = None
    remaining_s: float | None = Field(None, ge=0)
    lines_sent: Count | None = None


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
    outbox_depth: Count | None = Field(None, description="events in the agent's outbox the hub has not confirmed")
    outbox_dropped: Count | None = Field(None, description="events the full outbox dropped since the agent started")


# --------------------------------------------------------------------------- events


class JobStarted(Model):
    type: Literal["job_started"] = "job_started"
    device: Ident
    job_id: Ref
    lines_total: Count | None = None


class JobProgress(Model):
    type: Literal["job_progress"] = "job_progress"
    device: Ident
    job_id: Ref
    progress: Fraction
    lines_done: Count = 0


class JobPaused(Model):
    type: Literal["job_paused"] = "job_paused"
    device: Ident
    job_id: Ref
    reason: Text = ""


class JobResumed(Model):
    type: Literal["job_resumed"] = "job_resumed"
    device: Ident
    job_id: Ref


class JobCompleted(Model):
    type: Literal["job_completed"] = "job_completed"
    device: Ident
    job_id: Ref
    duration_s: float
    lines: Count
    resends: Count = 0
    extruded_mm: float | None = Field(None, description="filament pushed by the extruder(s), for stock and actual cost")


class JobFailed(Model):
    type: Literal["job_failed"] = "job_failed"
    device: Ident
    job_id: Ref
    reason: Text
    cancelled: bool = False


class DeviceError(Model):
    type: Literal["device_error"] = "device_error"
    device: Ident
    message: Text = Field(description="what went wrong, in the firmware's own words where it said")
    job_id: Ref | None = Field(None, description="the job running when it happened, if any")
    command: Line | None = Field(None, description="the command the firmware refused, when it refused one")


class RenderProgress(Model):
    type: Literal["render_progress"] = "render_progress"
    device: Ident
    task_id: Ref
    frame: Frame
    samples_done: Count | None = None
    samples_total: Count | None = None
    remaining_s: float | None = None
    mem_mb: float | None = None


class FrameRendered(Model):
    """One frame saved and uploaded to the hub (identified by its hash)."""

    type: Literal["frame_rendered"] = "frame_rendered"
    device: Ident
    task_id: Ref
    frame: Frame
    render_s: float
    output_sha256: Sha256
    output_name: Name


class RenderTaskCompleted(Model):
    type: Literal["render_task_completed"] = "render_task_completed"
    device: Ident
    task_id: Ref
    frames: list[Frame]
    duration_s: float


class RenderTaskFailed(Model):
    type: Literal["render_task_failed"] = "render_task_failed"
    device: Ident
    task_id: Ref
    reason: Text
    output_tail: list[Line] = Field(default_factory=list, max_length=100, description="Blender's last output lines")
    cancelled: bool = False
    timed_out: bool = False


class ConsoleOutput(Model):
    """What the firmware answered to a SendGcode, in its own words."""

    type: Literal["console_output"] = "console_output"
    device: Ident
    command_id: Ref
    lines: list[Line] = Field(max_length=500)


class CommandAck(Model):
    """The agent's answer to a command: accepted, rejected (with why) or done."""

    type: Literal["command_ack"] = "command_ack"
    command_id: str
    status: Literal["accepted", "rejected", "done", "failed"]
    reason: Text = ""


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
    job_id: Ref
    file_sha256: Sha256
    file_size: Count
    file_url: str = Field(description="absolute URL the agent GETs the file from")


class StartRender(_Command):
    """Render frames frame_start..frame_end of a .blend (resources packed) and upload each frame."""

    type: Literal["start_render"] = "start_render"
    task_id: Ref
    job_id: Ref
    blend_sha256: Sha256
    blend_size: Count
    blend_url: str
    upload_url: str = Field(description="POST each output here (multipart 'file', with task_id and frame)")
    frame_start: Frame
    frame_end: Frame
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
    job_id: Ref | None = None


class EmergencyStop(_Command):
    type: Literal["emergency_stop"] = "emergency_stop"


class Rebirth(Model):
    """The hub asks a node to publish its birth and every device's status again (Sparkplug's rebirth).

    Sent when the hub sees a gap in the node's seq or a status of a device it does
    not know. Republishing is idempotent, so it has no acknowledgement.
    """

    type: Literal["rebirth"] = "rebirth"
    reason: Text = ""


# --------------------------------------------------------------------------- scripts


class EventAck(Model):
    """The hub's confirmation of a node's events: every event up to ``seq`` is stored (or was given up by the
    node itself, see ``Envelope.prev_seq``); the node deletes them from its outbox."""

    type: Literal["event_ack"] = "event_ack"
    seq: Count = Field(description="high-water mark: the node's events with seq <= this are stored")


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
    HubState | NodeState | DeviceStatus | Telemetry | HostMetrics | Event | Command | Rebirth | EventAck | Request
    | Response,
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
        le=MAX_SEQ,
        description="per-sender sequence number of QoS 1 traffic; receivers de-duplicate on (sender, seq)",
    )
    prev_seq: int | None = Field(
        None,
        ge=0,
        le=MAX_SEQ,
        description="events: the sender's greatest seq below this one that it still holds unconfirmed (0: none);"
                    " what lies between was confirmed or dropped by the sender, so the hub may confirm past it",
    )
    body: Body
