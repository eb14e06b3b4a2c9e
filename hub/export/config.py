"""``[export]``: where the outbound events go. Everything here is off until configured."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RedisExportConfig(_Section):
    url: str | None = Field(None, description="e.g. redis://127.0.0.1:6379/0; unset: no Redis export")
    stream: str = Field("farmhand:events", min_length=1, description="the stream key events are added to")
    maxlen: int = Field(1_000_000, ge=1000, description="approximate cap on the stream's length (XADD MAXLEN ~)")
    batch: int = Field(1000, ge=1, le=10_000, description="events sent per round trip")
    poll_interval_s: float = Field(0.05, gt=0, description="how often the log is checked for new events")
    retry_max_s: float = Field(5.0, gt=0, description="longest wait between tries while Redis is away")


class WebhookConfig(_Section):
    max_attempts: int = Field(8, ge=1, le=50, description="tries before an event goes to the dead-letter list")
    backoff_base_s: float = Field(1.0, gt=0, description="wait after the first failure; doubles after each")
    backoff_max_s: float = Field(300.0, gt=0)
    timeout_s: float = Field(10.0, gt=0, description="a receiver slower than this has failed the try")
    poll_interval_s: float = Field(0.1, gt=0)


class ExportConfig(_Section):
    keep_days: float = Field(7.0, gt=0, description="events every exporter has passed are pruned after this")
    redis: RedisExportConfig = Field(default_factory=RedisExportConfig)
    webhooks: WebhookConfig = Field(default_factory=WebhookConfig)
