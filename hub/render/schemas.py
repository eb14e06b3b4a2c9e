"""Bodies of the render-job API, as pydantic models (the OpenAPI document is generated from them)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocol.messages import Sha256

Engine = Literal["CYCLES", "BLENDER_EEVEE", "BLENDER_EEVEE_NEXT", "BLENDER_WORKBENCH"]
CyclesDevice = Literal["CPU", "CUDA", "OPTIX", "HIP", "ONEAPI", "METAL"]
# What the agent's Blender command line accepts (agent/render/command.py).
FileFormat = Literal["PNG", "JPEG", "OPEN_EXR"]
Quality = Literal["preview", "draft", "final"]
Tag = str


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Preset(BaseModel):
    samples: int
    resolution_pct: int
    denoise: bool


PRESETS: dict[str, Preset] = {
    "preview": Preset(samples=8, resolution_pct=25, denoise=False),
    "draft": Preset(samples=32, resolution_pct=50, denoise=False),
    "final": Preset(samples=128, resolution_pct=100, denoise=True),
}


class RenderJobState(StrEnum):
    QUEUED = "queued"
    RENDERING = "rendering"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskState(StrEnum):
    QUEUED = "queued"
    ASSIGNED = "assigned"  # StartRender sent, not yet accepted
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_TASK_STATES = (TaskState.ASSIGNED, TaskState.RUNNING)
JOB_TERMINAL = (RenderJobState.COMPLETED, RenderJobState.FAILED, RenderJobState.CANCELLED)


CameraName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[^\x00-\x1f\x7f]+$")]


class RenderJobCreate(_In):
    """One job, or a batch: several .blend files rendered with the same settings, one job each."""

    blend_sha256: Sha256 | None = Field(None, description="an uploaded .blend (resources packed)")
    batch: list[Sha256] = Field(default_factory=list, max_length=100,
                                description="several .blend files: one job each, sharing a batch id")
    cameras: list[CameraName] = Field(default_factory=list, max_length=50,
                                      description="render through each of these cameras: one job per file and camera")
    name: str | None = Field(None, min_length=1, max_length=200, description="default: the file's name")
    frame_start: int = Field(1, ge=0, le=1_048_574)
    frame_end: int = Field(1, ge=0, le=1_048_574)
    engine: Engine = "CYCLES"
    cycles_device: CyclesDevice = "CPU"
    quality: Quality = "final"
    samples: int | None = Field(None, ge=1, le=1_000_000, description="overrides the quality preset")
    resolution_pct: int | None = Field(None, ge=1, le=400, description="overrides the quality preset")
    file_format: FileFormat = "PNG"
    priority: int = Field(0, ge=-1000, le=1000, description="higher runs first")
    tags: list[Tag] = Field(default_factory=list, max_length=20,
                            description="a node must declare each of these among its capabilities")
    min_vram_mb: int | None = Field(None, ge=1, description="a GPU node needs a GPU with at least this much")
    chunk_size: int | None = Field(None, ge=1, le=100_000,
                                   description="frames per task; default: derived from the preview's frame times")
    preview: bool = Field(True, description="render the first, middle and last frame at preview quality first")
    max_attempts: int | None = Field(None, ge=1, le=20, description="tries per task before the job fails")
    max_node_failures: int | None = Field(None, ge=1, le=100,
                                          description="failures on one node before it is kept off this job")
    timeout_s: float | None = Field(None, gt=0, le=7 * 86_400, description="per task")

    @model_validator(mode="after")
    def _one_source(self) -> RenderJobCreate:
        if (self.blend_sha256 is None) == (not self.batch):
            raise ValueError("give blend_sha256 (one job) or batch (several), not both or neither")
        if self.frame_end < self.frame_start:
            raise ValueError(f"frame_end {self.frame_end} is before frame_start {self.frame_start}")
        return self

    @property
    def files(self) -> list[str]:
        return [self.blend_sha256] if self.blend_sha256 else list(dict.fromkeys(self.batch))


class RenderJobFilter(_In):
    state: RenderJobState | None = None


class RenderTask(BaseModel):
    id: int
    kind: Literal["preview", "frames"]
    frame_start: int
    frame_end: int
    state: TaskState
    device: str | None
    attempt: int = Field(description="how many times the task went back to the queue")
    frames_done: int
    duration_s: float | None
    error: str | None


class RenderJob(BaseModel):
    id: int
    batch_id: str | None
    name: str
    state: RenderJobState
    blend_sha256: str
    frame_start: int
    frame_end: int
    engine: str
    cycles_device: str
    quality: str
    samples: int
    resolution_pct: int
    denoise: bool = Field(description="off: denoising is switched off; on: the .blend's own setting is kept")
    camera: str | None = Field(description="the camera rendered through; null: the file's active camera")
    file_format: str
    priority: int
    tags: list[str]
    min_vram_mb: int | None
    chunk_size: int | None
    preview: bool
    preview_done: bool
    frames_total: int
    frames_done: int
    progress: float
    mean_frame_s: float | None = Field(description="measured at full quality, or estimated from the preview")
    eta_s: float | None
    error: str | None
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    tasks: list[RenderTask]


class RenderSubmission(BaseModel):
    batch_id: str | None
    jobs: list[RenderJob]


class RenderOutput(BaseModel):
    frame: int
    preview: bool
    sha256: str
    name: str
    size: int
    render_s: float | None
    device: str | None
    created_at: datetime
    url: str


class StoredOutput(BaseModel):
    job_id: int
    task_id: int
    frame: int
    preview: bool
    sha256: str


class CostLine(BaseModel):
    node_class: str
    hours: float
    machine_cost: float
    energy_kwh: float
    energy_cost: float


class CostFigure(BaseModel):
    total: float
    hours: float
    energy_kwh: float
    lines: list[CostLine]


class RenderCost(BaseModel):
    job_id: int
    currency: str
    estimate: CostFigure | None = Field(description="before the full job, from the preview frames' measured times")
    estimated_frame_s: float | None
    actual: CostFigure | None = Field(description="every task run so far, failed attempts included")
    final: bool = Field(description="the job has ended: actual will not change")
