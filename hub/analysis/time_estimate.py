"""What the print-time estimator is told and what it answers: settings, the estimate, and where its limits came from."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EstimatorSettings(BaseModel):
    """What the planner cannot know from the G-code; defaults fit a typical 24 V FDM printer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ambient_c: float = 25.0
    hotend_heat_rate_c_s: float = Field(2.0, gt=0, description="°C per second while the hotend heats")
    bed_heat_rate_c_s: float = Field(0.5, gt=0, description="°C per second while the bed heats")
    chamber_heat_rate_c_s: float = Field(0.05, gt=0)
    homing_s: float = Field(10.0, ge=0, description="per G28")
    probing_s: float = Field(60.0, ge=0, description="per G29/G80/BED_MESH_CALIBRATE")
    mode: Literal["normal", "silent"] = Field(
        "normal", description="which of the slicer's declared limit sets to plan with, when the file offers both")


class LimitsUsed(BaseModel):
    """Where the planner's limits came from, so a reader can judge the estimate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["machine", "slicer_config"] = Field(
        description="slicer_config: the limits the file's slicer declared; machine: the machine model's")
    machine: str = Field(description="machine model id: its firmware, and any limit the file does not state")
    slicer: str | None = None
    mode: Literal["normal", "silent"] = "normal"
    gcode_overrides: list[str] = Field(default_factory=list,
                                       description="limit commands in the file that changed them while printing")


class ProgressCheck(BaseModel):
    """Our clock against the slicer's own ``M73`` progress marks (percent of its estimated time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    marks: int
    slicer_total_s: float | None = Field(None, description="remaining time at the first mark, M73 R (minutes)")
    max_gap_pct: float = Field(description="largest difference between our progress and the mark's P, in points")


class TimeEstimate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    total_s: float
    moves_s: float = Field(description="planned motion only: what slicers call their estimate")
    dwell_s: float
    heating_s: float
    homing_s: float
    probing_s: float
    blocks: int
    limits: LimitsUsed | None = None
    progress: ProgressCheck | None = Field(None, description="present when the file has M73 progress lines")
