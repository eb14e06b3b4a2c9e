"""Request and response bodies of stored quotes."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from ..costing import Line


class QuoteStatus(StrEnum):
    DRAFT = "draft"
    SENT = "sent"
    ACCEPTED = "accepted"  # it became an order (order_id)
    EXPIRED = "expired"  # its validity date passed before it was accepted
    REJECTED = "rejected"


OPEN = (QuoteStatus.DRAFT, QuoteStatus.SENT)


class QuoteLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="G-code, or a mesh (quick quote or sliced)")
    copies: int = Field(1, ge=1, le=10_000)
    material: str = Field("PLA", max_length=20)
    color: str | None = Field(None, pattern=r"^#?[0-9A-Fa-f]{6}$")
    machine_model: str | None = None
    quality: str | None = Field(None, description="a mesh: slice it with this quality layer and quote precisely")
    description: str | None = Field(None, max_length=200, description="default: the file's name")


class QuoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer: str = Field(min_length=1, max_length=200)
    customer_address: list[str] = Field(default_factory=list, max_length=6)
    reference: str | None = Field(None, max_length=200)
    notes: str | None = Field(None, max_length=4000)
    vat_pct: float | None = Field(None, ge=0, le=100, description="default: [documents] vat_pct")
    valid_until: dt.date | None = Field(None, description="default: today plus [documents] validity_days")
    stages: list[str] = Field(default_factory=list, max_length=20, description="post-processing for the order")
    lines: list[QuoteLineIn] = Field(min_length=1, max_length=100)


class QuoteLine(BaseModel):
    position: int
    file_sha256: str
    description: str
    copies: int
    material: str
    color: str | None
    machine_model: str | None
    quality: str | None
    kind: str = Field(description="quick (from the mesh) or precise (from G-code)")
    grams: float = Field(description="for all copies")
    hours: float = Field(description="printer time for all copies")
    unit_price: float
    total: float
    cost: float = Field(description="before markup, for all copies")
    breakdown: list[Line]


class Quote(BaseModel):
    id: int
    number: str = Field(description="Q-YEAR-NNNN: one sequence per year, without gaps")
    status: QuoteStatus
    customer: str
    customer_address: list[str]
    reference: str | None
    notes: str | None
    currency: str
    net: float
    vat_pct: float
    vat: float
    total: float
    valid_until: dt.date
    stages: list[str]
    created_at: str
    sent_at: str | None
    decided_at: str | None = Field(description="when it was accepted, rejected or found expired")
    order_id: int | None
    lines: list[QuoteLine]


class QuoteListQuery(BaseModel):
    status: QuoteStatus | None = None
    customer: str | None = None
