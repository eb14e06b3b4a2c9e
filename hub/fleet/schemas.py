"""Nodes and devices as the API shows them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from protocol.messages import Heater, HostMetrics

from hub.api import Items, PageQuery, RowCursor


class DeviceSpool(BaseModel):
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
    material: DeviceSpool | None = Field(None, description="the spool loaded on it (POST .../spool)")


class Node(BaseModel):
    id: str
    online: bool
    agent_version: str
    hostname: str
    updated_at: datetime
    devices: list[str]
    metrics: HostMetrics | None = None


class DeviceQuery(PageQuery):
    since: RowCursor | None = Field(None, description="only devices changed after this `revision` of an earlier answer")


class DeviceItems(Items[Device]):
    revision: int = Field(description="the hub's count of device changes now; pass as ?since= to get only what changed")
