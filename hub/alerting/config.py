"""The ``[alerting]`` section: rules, how often they are checked, and where alerts are sent."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleKind(StrEnum):
    HEATER_OFF_TARGET = "heater_off_target"  # threshold: °C between a heater and its (non-zero) target
    SILENCE = "silence"  # threshold: seconds without telemetry or status from a device
    PRINT_OVERRUN = "print_overrun"  # threshold: % a running print is past its G-code's estimate
    HOST_METRIC = "host_metric"  # threshold: a node's reading (metric) above it
    RENDER_STALLED = "render_stalled"  # threshold: seconds a running render task has delivered no frame


# outbox_depth: events the agent holds that the hub has not confirmed (a broker or hub it cannot reach).
HostMetricName = Literal["cpu_temp_c", "cpu_pct", "mem_pct", "disk_pct", "load1", "outbox_depth"]


class AlertRule(_Section):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$", description="identifies the rule's alerts")
    kind: RuleKind
    threshold: float
    for_s: float = Field(0.0, ge=0, description="the condition must hold this long before the alert is raised")
    severity: Literal["info", "warning", "critical"] = "warning"
    subjects: str = Field("*", description="fnmatch pattern on node/device (host metrics: on the node)")
    heater: str | None = Field(None, description="heater_off_target: only this heater (e.g. T0, B); default: any")
    metric: HostMetricName | None = Field(None, description="host_metric: which reading")

    @model_validator(mode="after")
    def _metric_for_host_rules(self) -> AlertRule:
        if (self.kind == RuleKind.HOST_METRIC) != (self.metric is not None):
            raise ValueError("metric is given for host_metric rules, and only for them")
        return self


class WebhookChannel(_Section):
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr | None = Field(None, description="signs each body as the event export does "
                                                       "(X-Farmhand-Signature: t=…,v1=HMAC-SHA256)")


class EmailChannel(_Section):
    host: str
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = Field(False, description="upgrade the connection with STARTTLS before logging in or "
                                              "sending; the server's certificate is verified")
    ca_file: Path | None = Field(None, description="starttls: the CA the server's certificate must chain to "
                                                   "(default: the system's CAs)")
    username: str | None = Field(None, description="log in (AUTH) with this user; needs starttls")
    password: SecretStr | None = None
    sender: str = Field("farmhand@localhost", description="From:")
    to: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _login_over_tls(self) -> EmailChannel:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.username is not None and not self.starttls:
            raise ValueError("a login needs starttls: the password is never sent in the clear")
        if self.ca_file is not None and not self.starttls:
            raise ValueError("ca_file is for starttls")
        return self


class AlertingConfig(_Section):
    interval_s: float = Field(5.0, gt=0, description="how often the rules are checked")
    rules: list[AlertRule] = Field(default_factory=list, description="defaults; PUT /api/v1/alert-rules replaces them")
    webhooks: list[WebhookChannel] = Field(default_factory=list)
    mqtt_topic: str | None = Field(None, description="publish each alert event here (QoS 1), e.g. farmhand/v1/hub/alerts, which the shipped broker ACL lets the hub write and scripts read")
    email: EmailChannel | None = None
    max_attempts: int = Field(5, ge=1, le=100, description="deliveries tried this many times, once per check")
