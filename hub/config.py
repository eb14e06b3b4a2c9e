"""The hub's configuration: one TOML file, overridable with FARMHAND_HUB__… variables.

Every section is here, so reading this file tells all a hub can be told; each component
receives its own section in its constructor.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from protocol.messages import Ident

from hub.backup.schedule import BackupConfig
from hub.export.config import ExportConfig

class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535, description="0 picks a free port")
    cert_file: Path | None = Field(None, description="serve HTTPS with this certificate (farmhand certs issue hub)")
    key_file: Path | None = Field(None, description="the certificate's private key")

    @model_validator(mode="after")
    def _cert_and_key(self) -> HttpConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    def tls(self) -> ssl.SSLContext | None:
        if self.cert_file is None or self.key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


class BrokerConfig(_Section):
    """The [mqtt] section: the broker the hub connects to, or the one it embeds."""

    url: str | None = Field(None, description="external broker, e.g. mqtt://broker:1883; unset runs amqtt in-process")
    embedded_host: str = "127.0.0.1"
    embedded_port: int = Field(1883, ge=0, le=65535, description="0 picks a free port")
    ca_file: Path | None = Field(None, description="the farm CA an mqtts:// broker's certificate must chain to")


class BootstrapToken(_Section):
    name: str = Field(min_length=1, max_length=64)
    role: Literal["admin", "operator", "viewer", "agent"]
    token: SecretStr = Field(min_length=20, description="the bearer token itself; only its hash is kept in memory")


class AuthConfig(_Section):
    admin_user: str = Field("admin", min_length=1, max_length=64)
    admin_password: SecretStr | None = Field(
        None, description="first run only: the admin's password; unset prints a generated one once")
    bootstrap_tokens: list[BootstrapToken] = Field(
        default_factory=list, description="tokens accepted without a database row: CI, the demo, provisioning")
    session_hours: float = Field(12.0, gt=0)
    login_failures: int = Field(5, ge=1, description="failed logins per client and per user before a pause")
    login_window_s: float = Field(300.0, gt=0)
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed cross-site; empty: CORS off")
    secure_cookies: bool = Field(False, description="mark cookies Secure (set when served over HTTPS)")


# [render]: retry policy, task sizing and what render time costs. The energy price lives here until
# the hub has one cost model for prints and renders alike.


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


# [retention]: how long the hub keeps its logs.


class RetentionConfig(_Section):
    events_days: float = Field(90.0, ge=0, description="keep events (other than progress) this long; 0 keeps all")
    progress_days: float = Field(7.0, ge=0, description="keep job progress events this long; 0 keeps all")
    telemetry_days: float = Field(14.0, ge=0, description="keep telemetry samples this long; 0 keeps all")
    interval_s: float = Field(3600.0, gt=0, description="how often to look for rows to delete")


class JobsConfig(_Section):
    """What happens to a job whose print was cut short (hub/jobs/reconcile.py)."""

    requeue_interrupted: bool = Field(True, description="queue a job again when its print was cut short")
    max_attempts: int = Field(3, ge=1, le=100, description="starts a job gets before an interruption ends it")
    offline_deadline_s: float = Field(900.0, gt=0, description="a node away this long has its jobs interrupted")


class HubConfig(_Section):
    hub_id: Ident = "hub"
    data_dir: Path = Path("var/hub")
    http: HttpConfig = Field(default_factory=HttpConfig)
    public_url: str | None = Field(
        None, description="base URL agents fetch files from; default: the bound HTTP address"
    )
    mqtt: BrokerConfig = Field(default_factory=BrokerConfig)
    max_upload_mb: float = Field(512, gt=0)
    ack_timeout_s: float = Field(20.0, gt=0, description="how long an agent has to accept a start command")
    telemetry_history_interval_s: float = Field(10.0, ge=0)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    render: RenderConfig = Field(default_factory=RenderConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)  # export-backup: events out (off by default)
    backup: BackupConfig = Field(default_factory=BackupConfig)  # export-backup: scheduled backups
