"""Request and response bodies of orders: what a customer asked for and where it stands."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from hub.api.listing import PageQuery
from hub.api.models import change_of

STAGE = r"^[a-z][a-z0-9_]{0,39}$"


class OrderStatus(StrEnum):
    DRAFT = "draft"  # not every copy is a job yet: meshes are being sliced, or slicing failed
    QUEUED = "queued"
    PRINTING = "printing"
    PRINTED = "printed"
    POST_PROCESSING = "post-processing"
    DONE = "done"
    FAILED = "failed"  # every job ended, and some failed or were cancelled one by one
    CANCELLED = "cancelled"


class OrderItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="G-code, or a mesh to slice first")
    copies: int = Field(1, ge=1, le=1000)
    material: str | None = Field(None, max_length=20, description="e.g. PLA; meshes default to PLA")
    color: str | None = Field(None, pattern=r"^#?[0-9A-Fa-f]{6}$")
    deadline: AwareDatetime | None = Field(None, description="default: the order's")
    notes: str | None = Field(None, max_length=2000)
    machine_model: str | None = Field(None, description="meshes: slice for this model; default: one the farm has "
                                                        "that the model fits")
    quality: str = Field("0.20mm", description="meshes: the quality layer to slice with")


class OrderFields(BaseModel):
    """What an order says besides its items: what a change may touch."""

    model_config = ConfigDict(extra="forbid")
    customer: str = Field(min_length=1, max_length=200)
    reference: str | None = Field(None, max_length=200)
    notes: str | None = Field(None, max_length=5000)
    deadline: AwareDatetime | None = None
    price: float | None = Field(None, ge=0, description="the agreed price; default: the sum of the items' quotes")
    stages: list[str] = Field(default_factory=list, max_length=20,
                              description="post-processing after printing, in order, e.g. "
                                          "[\"support_removal\", \"qc\", \"packed\", \"shipped\"]")

    @field_validator("stages")
    @classmethod
    def _stages(cls, stages: list[str]) -> list[str]:
        for s in stages:
            if not re.match(STAGE, s):
                raise ValueError(f"stage {s!r}: lower-case letters, digits and _ only")
        if len(set(stages)) != len(stages):
            raise ValueError("a stage is listed twice")
        return stages


class OrderCreate(OrderFields):
    """An order: a customer's items, each copy a print job."""

    items: list[OrderItemIn] = Field(min_length=1, max_length=100)


OrderChange = change_of(OrderFields, "OrderChange")


class StageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notes: str | None = Field(None, max_length=2000)


class StageRecord(BaseModel):
    stage: str
    by: str
    at: str
    notes: str | None = None


class OrderItem(BaseModel):
    id: int
    file_sha256: str
    copies: int
    material: str | None
    color: str | None
    deadline: str | None
    notes: str | None
    machine_model: str | None
    quality: str | None
    slice_job_id: int | None
    gcode_sha256: str | None = Field(description="what is printed: the upload, or the slice of the mesh")
    jobs: list[int]
    quoted_cost: float | None
    quoted_price: float | None
    error: str | None = Field(description="why this item has no jobs (its slicing failed)")


class OrderCost(BaseModel):
    currency: str
    quoted_cost: float = Field(description="sum of the items' quotes, before markup")
    actual_cost: float = Field(description="sum of the actual costs of jobs that ran")
    cost: float = Field(description="actual cost of jobs that ran plus the quoted cost of jobs still to run")
    price: float = Field(description="the agreed price, or the sum of the items' quoted prices")
    margin: float = Field(description="price minus cost")


class Order(BaseModel):
    id: int
    customer: str
    reference: str | None
    notes: str | None
    deadline: str | None
    created_at: str
    cancelled_at: str | None
    status: OrderStatus
    stages: list[str]
    stages_done: list[StageRecord]
    jobs: dict[str, int] = Field(description="how many of its jobs are in each state")
    items: list[OrderItem]
    cost: OrderCost


class OrderListQuery(PageQuery):
    status: OrderStatus | None = None
    customer: str | None = None
