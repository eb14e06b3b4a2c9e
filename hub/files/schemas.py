"""Files as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, RootModel, create_model

from hub.analysis import GcodeAnalysis, MeshAnalysis


class FileInfo(BaseModel):
    sha256: str
    name: str
    size: int
    created_at: datetime
    url: str = Field(description="path to GET the bytes from")


class ThumbnailInfo(BaseModel):
    """A thumbnail the G-code carries; its image is at ``…/thumbnail`` (the largest PNG)."""

    format: Literal["PNG", "JPG", "QOI"]
    width: int
    height: int


class GcodeAnalysisView(GcodeAnalysis):
    kind: Literal["gcode"]
    thumbnails: list[ThumbnailInfo]  # type: ignore[assignment]


# MeshAnalysis has a method named ``fits``; the stored analysis has a field of that name beside its fields.
MeshAnalysisView = create_model(
    "MeshAnalysisView",
    kind=(Literal["mesh"], ...),
    fits=(dict[str, bool], Field(description="per machine model: whether the mesh fits its build volume")),
    **{name: (field.annotation, field) for name, field in MeshAnalysis.model_fields.items()},  # type: ignore[call-overload]
)


class FileAnalysis(RootModel[GcodeAnalysisView | MeshAnalysisView]):  # type: ignore[valid-type]
    """What the analysis found in a file: G-code or a mesh, told apart by ``kind``."""
