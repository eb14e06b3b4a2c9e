"""Render settings of the hub: retry policy, task sizing and what render time costs.

A ``[render]`` section of the hub's TOML. The energy price lives here until
the hub has one cost model for prints and renders alike.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeClass(_Section):
    """A kind of render node and what an hour of it costs; the first class that matches a device applies."""

    name: str = Field(min_length=1, max_length=64)
    match: str = Field("*", description="glob on the device ref 'node/device'")
    gpu: str | None = Field(None, description="glob on a GPU name; the class then applies only to GPU renders")
    hourly_rate: float = Field(ge=0, description="price per GPU-hour (GPU classes) or CPU-hour")
    power_w: float = Field(ge=0, description="power drawn while rendering")


class RenderCosts(_Section):
    currency: str = "EUR"
    energy_price_per_kwh: float = Field(0.30, ge=0)
    classes: list[NodeClass] = Field(default_factory=lambda: [
        NodeClass(name="gpu", match="*", gpu="*", hourly_rate=0.50, power_w=350),
        NodeClass(name="cpu", match="*", hourly_rate=0.05, power_w=120),
    ])


class RenderConfig(_Section):
    max_attempts: int = Field(3, ge=1, description="tries per task before its job fails")
    max_node_failures: int = Field(2, ge=1, description="failures of a job on one node before the node is kept off it")
    target_task_s: float = Field(180.0, gt=0, description="a derived chunk aims at tasks this long (1-5 min)")
    default_chunk: int = Field(10, ge=1, description="frames per task when neither the user nor a preview says")
    task_timeout_s: float = Field(3600.0, gt=0)
    costs: RenderCosts = Field(default_factory=RenderCosts)
