"""The ``[documents]`` section: what the farm prints on its paper."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class DocumentsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    farm_name: str = Field("Farmhand print farm", min_length=1, max_length=120)
    address: list[str] = Field(default_factory=list, max_length=6, description="lines under the name on a quote")
    logo_file: Path | None = Field(None, description="PNG or JPEG printed at the top of quotes")
    vat_pct: float = Field(0.0, ge=0, le=100, description="tax rate a quote adds to its net total")
    validity_days: int = Field(30, ge=1, le=3650, description="how long a quote stands by default")
    terms: str = Field("Prices include material, machine time and finishing as listed. Delivery on receipt of "
                       "the accepted quote.", max_length=4000)
    panel_url: str | None = Field(None, description="base of the links in QR codes; default: the hub's public URL")
