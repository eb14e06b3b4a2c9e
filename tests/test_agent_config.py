"""The agent's config: the shipped example loads, mistakes are named, the environment overrides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent import devices
from agent.config import AgentConfig
from protocol.config import ConfigError, load

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "systemd" / "agent.example.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_the_shipped_example_loads() -> None:
    config = load(AgentConfig, EXAMPLE, "FARMHAND_AGENT", environ={})
    assert config.node_id == "pi-01"
    assert [d.id for d in config.devices] == ["mk3s-1", "ender3-1"]
    assert config.devices[1].profile == "marlin2" and config.devices[1].baud == 115200
    assert config.storage.dir == Path("/var/lib/farmhand-agent")
    assert config.mqtt.url.startswith("mqtts://") and config.mqtt.ca_file == config.hub.ca_file == \
        Path("/etc/farmhand/ca.crt"), "the example is the encrypted set-up"


def test_defaults_fill_everything_but_the_node_id(tmp_path: Path) -> None:
    config = load(AgentConfig, _write(tmp_path, 'node_id = "n1"\n'), "FARMHAND_AGENT", environ={})
    assert config.mqtt.url == "mqtt://127.0.0.1:1883" and config.mqtt.keepalive_s == 30
    assert config.hub.token is None
    assert config.storage.file_cache_mb == 512 and config.storage.spool_max_messages == 100_000
    assert config.telemetry_interval_s == 2.0 and config.metrics_interval_s == 10.0
    assert config.devices == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "node_id: Field required"),
        ('node_id = "has space"', "node_id: String should match pattern"),
        ('node_id = "n1"\nnode_name = "typo"', "node_name: Extra inputs are not permitted"),
        ('node_id = "n1"\n[mqtt]\nurl = "http://broker"', "must start with mqtt:// or mqtts://"),
        ('node_id = "n1"\n[storage]\nfile_cache_mb = 0', "storage.file_cache_mb: Input should be greater than or equal to 1"),
        ('node_id = "n1"\n[[devices]]\nid = "p1"\ndriver = "serial_gcode"', "devices.0.port: Field required"),
        ('node_id = "n1"\n[[devices]]\nid = "p1"\ndriver = "klipper"\nport = "/dev/x"',
         "unknown driver 'klipper'; known drivers: bambu, blender, moonraker, octoprint, "
         "prusalink, serial_gcode"),
        ('node_id = "n1"\n' + '[[devices]]\nid = "p1"\ndriver = "serial_gcode"\nport = "/dev/x"\n' * 2,
         "device ids must be unique; repeated: p1"),
        ('node_id = "n1"\ntelemetry_interval_s = ', "agent.toml: "),
        ('node_id = "n1"\n[[devices]]\nid = "p1"\ndriver = "serial_gcode"\nport = "/tmp/printer"\npacing = "fast"',
         "devices.0.pacing: Input should be 'auto', 'wire' or 'none'"),
    ],
    ids=["missing-node", "bad-node", "typo", "url", "cache", "port", "driver", "duplicate", "toml", "pacing"],
)
def test_bad_config_is_rejected_with_the_key_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(AgentConfig, _write(tmp_path, text), "FARMHAND_AGENT", environ={})
    assert message in str(err.value)
    assert str(tmp_path / "agent.toml") in str(err.value)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    environ = {
        "FARMHAND_AGENT__MQTT__URL": "mqtts://farm:pw@hub.example",
        "FARMHAND_AGENT__STORAGE__FILE_CACHE_MB": "64",
        "FARMHAND_AGENT__HUB__TOKEN": "123456",  # digits only: still a token, not a number
        "FARMHAND_AGENT__TELEMETRY_INTERVAL_S": "0.5",
    }
    config = load(AgentConfig, _write(tmp_path, 'node_id = "n1"\n[mqtt]\nurl = "mqtt://x"\n'), "FARMHAND_AGENT",
                  environ=environ)
    assert config.mqtt.url == "mqtts://farm:pw@hub.example"
    assert config.storage.file_cache_mb == 64
    assert config.hub.token is not None and config.hub.token.get_secret_value() == "123456"
    assert "123456" not in repr(config)
    assert config.telemetry_interval_s == 0.5


def test_unknown_driver_kinds_are_refused_by_the_registry() -> None:
    with pytest.raises(devices.UnknownDriver, match="known drivers: bambu, blender, moonraker, octoprint, prusalink, "
                                                   "serial_gcode"):
        devices.check_kind("klipper")
    assert "serial_gcode" in devices.known_kinds()


def _python(code: str) -> str:
    """What ``code`` prints in a fresh interpreter (which modules an import loads is only seen in one)."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_loading_the_registry_loads_no_driver() -> None:
    """A node imports a driver's code only when its config uses that driver."""
    code = (
        "import sys, agent.devices, agent.config, agent.node\n"
        "loaded = [m for m in sys.modules if m.startswith('agent.devices.') and m != 'agent.devices.base']\n"
        "heavy = [m for m in ('numpy', 'trimesh', 'hub') if m in sys.modules]\n"
        "print(loaded, heavy)\n"
    )
    assert _python(code) == "[] []"


def test_the_agent_command_loads_neither_the_other_commands_nor_the_serial_code() -> None:
    """``farmhand agent`` reads only its own options: the demo, the simulators and the serial driver stay unloaded
    in an agent of networked printers (each costs it memory: bench.network_printers measures its RSS)."""
    code = (
        "import sys\n"
        "from farmhand import cli\n"
        "argv = ['--log-level', 'warning', 'agent', '--config', 'agent.toml']\n"
        "print(cli._parser(cli._command(argv)).parse_args(argv).config)\n"
        "import agent.config, agent.node\n"
        "print(sorted(m for m in sys.modules if m.startswith(('farmhand.', 'agent.serial.', 'agent.devices.'))))\n"
    )
    config, loaded = _python(code).splitlines()
    assert config == "agent.toml"
    assert loaded == str(["agent.devices.base", "agent.serial.pacing", "farmhand.broker_cli", "farmhand.certs",
                          "farmhand.cli", "farmhand.export_cli", "farmhand.ops_cli", "farmhand.system_tools"])


def test_an_agent_with_every_network_driver_loads_no_aiohttp() -> None:
    """The drivers, the file cache and the frame uploader speak HTTP through agent/net: aiohttp's client and what
    it imports are about 13 MB of an agent's memory (issue 15), and a Pi's install (farmhand[agent]) lacks it."""
    code = (
        "import sys\n"
        "import agent.node, agent.files, agent.render.upload\n"
        "import agent.devices.octoprint, agent.devices.moonraker, agent.devices.prusalink, agent.devices.bambu\n"
        "print(sorted(m for m in ('aiohttp', 'multidict', 'yarl') if m in sys.modules))\n"
    )
    assert _python(code) == "[]"


def test_the_agent_command_skips_pydantics_plugin_search(tmp_path: Path) -> None:
    """Pydantic's plugin search reads every installed distribution's metadata (importlib.metadata, email, zipfile:
    about 2 MB of an agent's memory); ``farmhand agent`` answers it with none (agent.footprint), and its config
    and messages are validated as before."""
    config = _write(tmp_path, 'node_id = "n1"\n'
                              '[[devices]]\nid = "p1"\ndriver = "serial_gcode"\nport = "/dev/ttyACM0"\n'
                              '[[devices]]\nid = "p1"\ndriver = "serial_gcode"\nport = "/dev/ttyACM1"\n')
    code = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from farmhand import cli\n"
        "from protocol import codec, messages\n"
        "from protocol.config import ConfigError\n"
        "try:\n"
        f"    asyncio.run(cli._run_agent(Path({str(config)!r})))\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
        "body = codec.decode(codec.encode(codec.make('n1', messages.Telemetry(device='p1', progress=0.5)))).body\n"
        "try:\n"
        "    codec.decode(b'{\"sender\": \"hub\", \"body\": {\"type\": \"telemetry\", \"device\": \"p1\", \"progress\": 2}}')\n"
        "except codec.ProtocolError as exc:\n"
        "    print(exc)\n"
        "print(body.progress, 'importlib.metadata' in sys.modules)\n"
    )
    refused, invalid, result = _python(code).splitlines()
    assert refused.endswith("device ids must be unique; repeated: p1")
    assert invalid.startswith("body.progress (telemetry): Input should be less than or equal to 1")
    assert result == "0.5 False"
