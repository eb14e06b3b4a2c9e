"""Bodies of the hub's HTTP API (and of script requests over MQTT), as pydantic models.

These are the contract the OpenAPI document is generated from, so handlers
return them rather than hand-built dicts.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from protocol.messages import Heater, HostMetrics, Sha256

T = TypeVar("T")

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


class Items(BaseModel, Generic[T]):
    items: list[T]
    next: str | None = Field(None, description="cursor of the next page (pass as ?cursor=); null on the last page")


class FileInfo(BaseModel):
    sha256: str
    name: str
    size: int
    created_at: datetime
    url: str = Field(description="path to GET the bytes from")


class LoadedMaterial(BaseModel):
    """The spool the stock module has loaded on a printer, as the farm grid shows it."""

    spool_id: int
    material: str = Field(description="type, e.g. PLA, PETG")
    name: str | None = Field(description="the filament's colour or product name")
    color_hex: str | None = Field(description="'#rrggbb'")
    remaining_grams: float


class Device(BaseModel):
    ref: str = Field(description="'node/device', as used to pin a job")
    node: str
    id: str
    online: bool = Field(description="its node is connected and lists it")
    kind: str | None
    model: str | None
    firmware: str | None
    capabilities: list[str]
    state: str
    job_id: str | None
    progress: float | None
    temperatures: dict[str, Heater]
    error: str | None
    updated_at: datetime
    material: LoadedMaterial | None = Field(None, description="the spool loaded on it (POST .../spool)")


class Node(BaseModel):
    id: str
    online: bool
    agent_version: str
    hostname: str
    updated_at: datetime
    devices: list[str]
    metrics: HostMetrics | None = None


class Health(BaseModel):
    status: str
    hub_id: str
    mqtt_connected: bool
    schema_version: int
    counters: dict[str, dict[str, int]] = Field(
        description="ingest and request counters: malformed payloads, duplicates, rejects; rows pruned"
    )


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str


def dump(model: BaseModel) -> Any:
    return model.model_dump(mode="json")
