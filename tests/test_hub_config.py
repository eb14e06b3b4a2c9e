"""The hub's config: the shipped example loads as a farm hub needs it, and mistakes are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import HubConfig
from protocol.config import ConfigError, load

EXAMPLE = Path(__file__).resolve().parent.parent / "systemd" / "hub.example.toml"


def test_the_shipped_example_loads_for_a_farm_network() -> None:
    config = load(HubConfig, EXAMPLE, "FARMHAND_HUB", environ={})
    assert config.http.host == "0.0.0.0" and config.public_url == "https://hub.farm.lan:8080"
    assert config.http.cert_file == Path("/etc/farmhand/certs/hub.crt") and config.auth.secure_cookies
    assert config.mqtt.url is not None and config.mqtt.url.startswith("mqtt://hub:")
    assert config.data_dir == Path("/var/lib/farmhand/hub")
    assert (config.retention.progress_days, config.retention.telemetry_days, config.retention.events_days) == \
        (7, 14, 90)
    assert config.backup.schedule == "daily 02:00" and config.backup.dir is None  # <data_dir>/backups


def test_the_environment_overrides_the_file() -> None:
    config = load(HubConfig, EXAMPLE, "FARMHAND_HUB", environ={"FARMHAND_HUB__RETENTION__PROGRESS_DAYS": "2"})
    assert config.retention.progress_days == 2


def test_a_negative_keep_time_is_refused_with_its_key(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text("[retention]\ntelemetry_days = -1\n")
    with pytest.raises(ConfigError, match="retention.telemetry_days"):
        load(HubConfig, path, "FARMHAND_HUB", environ={})
