"""Files as the API shows them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class FileInfo(BaseModel):
    sha256: str
    name: str
    size: int
    created_at: datetime
    url: str = Field(description="path to GET the bytes from")
