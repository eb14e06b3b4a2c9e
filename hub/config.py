"""The hub's configuration: one TOML file, overridable with FARMHAND_HUB__… variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from protocol.messages import Ident


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535, description="0 picks a free port")


class MqttConfig(_Section):
    url: str | None = Field(None, description="external broker, e.g. mqtt://broker:1883; unset runs amqtt in-process")
    embedded_host: str = "127.0.0.1"
    embedded_port: int = Field(1883, ge=0, le=65535, description="0 picks a free port")


class HubConfig(_Section):
    hub_id: Ident = "hub"
    data_dir: Path = Path("var/hub")
    http: HttpConfig = Field(default_factory=HttpConfig)
    public_url: str | None = Field(
        None, description="base URL agents fetch files from; default: the bound HTTP address"
    )
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    max_upload_mb: float = Field(512, gt=0)
    ack_timeout_s: float = Field(20.0, gt=0, description="how long an agent has to accept a start command")
    telemetry_history_interval_s: float = Field(10.0, ge=0)
