"""Print jobs as the API and script requests see them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from protocol.messages import Sha256

DEVICE_REF = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}/[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobState(StrEnum):
    QUEUED = "queued"
    ASSIGNED = "assigned"
    PRINTING = "printing"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    """The print was cut short (its agent restarted, its node stayed away): not the part's fault."""


ACTIVE_STATES = (JobState.ASSIGNED, JobState.PRINTING, JobState.PAUSED)
TERMINAL_STATES = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED)


class JobCreate(_In):
    file_sha256: Sha256
    name: str | None = Field(None, min_length=1, max_length=200, description="default: the file's name")
    device: str | None = Field(None, pattern=DEVICE_REF, description="pin to one device, as 'node/device'")
    priority: int = Field(0, ge=-1000, le=1000, description="higher runs first; equal priorities run oldest first")
    requeue_interrupted: bool | None = Field(
        None, description="queue the job again when its print is cut short; default: the farm's [jobs] setting")


class JobRef(_In):
    id: int


class JobFilter(_In):
    state: JobState | None = None


class Job(BaseModel):
    id: int
    name: str
    state: JobState
    file_sha256: str
    device: str | None = Field(description="'node/device' the job is or was assigned to")
    pinned_device: str | None = None
    priority: int
    attempt: int = Field(description="how many times the job went back to the queue")
    progress: float | None
    lines: int | None
    lines_total: int | None = None
    resends: int | None
    extruded_mm: float | None = None
    duration_s: float | None = None
    error: str | None = Field(description="why it failed or was last sent back to the queue, in the device's words")
    cancel_requested: bool = False
    created_at: datetime
    assigned_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
