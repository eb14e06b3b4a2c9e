"""The agent's TOML configuration (``farmhand agent --config agent.toml``).

Loaded with ``protocol.config.load(AgentConfig, path, "FARMHAND_AGENT")``, so
``FARMHAND_AGENT__MQTT__URL=mqtt://hub.local`` overrides ``[mqtt] url``. See
``systemd/agent.example.toml`` for a commented example.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from protocol.messages import Ident
from protocol.mqtt import BrokerAddress

from . import devices
from .serial.pacing import Pacing


class _Section(BaseModel):
    # A typo in a key must fail loudly. Environment overrides arrive as TOML
    # scalars, so a token or id made of digits would otherwise be an int.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class MqttConfig(_Section):
    url: str = "mqtt://127.0.0.1:1883"
    keepalive_s: int = Field(30, ge=5, le=3600)
    ca_file: Path | None = Field(None, description="the farm CA an mqtts:// broker's certificate must chain to")

    @field_validator("url")
    @classmethod
    def _parseable(cls, url: str) -> str:
        BrokerAddress.parse(url)
        return url


class HubLink(_Section):
    token: SecretStr | None = Field(None, description="bearer token for job file downloads")
    ca_file: Path | None = Field(None, description="the farm CA an https hub's certificate must chain to")


class StorageConfig(_Section):
    dir: Path = Path("/var/lib/farmhand-agent")
    file_cache_mb: int = Field(512, ge=1)
    spool_max_messages: int = Field(100_000, ge=100)
    outbox_window: int = Field(200, ge=1, le=100_000, description="events sent and not yet confirmed by the hub")
    replay_jitter_s: float = Field(2.0, ge=0, le=600, description="longest random pause before replaying after a reconnect")


# Drivers that talk to their machine over a serial port; the others (Blender, networked printers) have none.
_NEEDS_PORT = frozenset({"serial_gcode"})
# What each networked printer's driver cannot do without.
_NETWORK_NEEDS: dict[str, tuple[str, ...]] = {
    "octoprint": ("url", "api_key"),
    "moonraker": ("url",),
    "prusalink": ("url",),
    # The printer's certificate is pinned: without it the link could not be verified.
    "bambu": ("url", "serial", "access_code", "ca_file"),
}


class DeviceConfig(_Section):
    id: Ident
    driver: str
    port: str | None = Field(None, min_length=1, validate_default=True,
                             description="serial device, e.g. /dev/ttyACM0 or /dev/serial/by-id/…")
    baud: int = Field(115200, gt=0)
    pacing: Pacing = Field(
        "auto", description="'wire': a UART, answers read at the baud rate's pace; 'none': a pty or USB link with no "
                            "wire (Klipper's /tmp/printer), answers read as they come; 'auto': ask the port's driver")
    profile: str = "marlin2"
    model: str | None = None
    # Render nodes (driver = "blender").
    blender: str = Field("blender", min_length=1, description="the Blender executable: a name on PATH or a path")
    max_task_s: float = Field(86_400.0, gt=0, description="upper bound on any render task's own timeout")
    # Networked printers (driver = "octoprint", "moonraker", "prusalink", "bambu").
    url: str | None = Field(None, min_length=1, description="the printer's address, e.g. http://octopi.local:5000")
    api_key: SecretStr | None = Field(None, description="OctoPrint application key, Moonraker or PrusaLink API key")
    username: str | None = Field(None, min_length=1, description="PrusaLink digest login (user name)")
    password: SecretStr | None = Field(None, description="PrusaLink digest login (password)")
    serial: str | None = Field(None, min_length=1, max_length=64, description="Bambu printer's serial number")
    access_code: SecretStr | None = Field(None, description="Bambu LAN-mode access code")
    ca_file: Path | None = Field(None, description="certificate to trust for the printer's TLS (Bambu: its own)")
    offline_after_s: float | None = Field(None, gt=0, description="silence after which the printer is offline")

    @field_validator("driver")
    @classmethod
    def _known_driver(cls, driver: str) -> str:
        devices.check_kind(driver)
        return driver

    @field_validator("port", mode="after")
    @classmethod
    def _port_when_needed(cls, port: str | None, info: ValidationInfo) -> str | None:
        driver = info.data.get("driver")
        if port is None and driver in _NEEDS_PORT:
            # Kept as pydantic's own "Field required" wording, with what to put there.
            raise PydanticCustomError(
                "missing", "Field required: the {driver} driver needs the serial device, e.g. /dev/ttyACM0",
                {"driver": driver},
            )
        return port

    @model_validator(mode="after")
    def _network_settings(self) -> DeviceConfig:
        missing = [k for k in _NETWORK_NEEDS.get(self.driver, ()) if getattr(self, k) is None]
        if missing:
            raise ValueError(f"the {self.driver} driver needs {', '.join(missing)}")
        if self.driver == "prusalink" and self.api_key is None and (self.username is None or self.password is None):
            raise ValueError("the prusalink driver needs username and password (or api_key on older builds)")
        return self


class AgentConfig(_Section):
    node_id: Ident
    mqtt: MqttConfig = MqttConfig()
    hub: HubLink = HubLink()
    storage: StorageConfig = StorageConfig()
    telemetry_interval_s: float = Field(2.0, gt=0)
    metrics_interval_s: float = Field(10.0, gt=0)
    devices: list[DeviceConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_device_ids(self) -> AgentConfig:
        repeated = sorted(i for i, n in Counter(d.id for d in self.devices).items() if n > 1)
        if repeated:
            raise ValueError(f"device ids must be unique; repeated: {', '.join(repeated)}")
        return self
