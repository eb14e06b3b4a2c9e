"""What a Bambu printer's reports mean: P1/A1 deltas merged onto the whole report, states, errors, materials."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import devices
from agent.config import AgentConfig
from agent.devices.bambu import BambuAddress, BambuPrinter
from agent.devices.bambu_report import PrintSnapshot
from agent.devices.network import JobPhase
from protocol.config import ConfigError, load
from protocol.messages import DeviceState, Heater, LoadedMaterial

from .test_agent_config import EXAMPLE
from .test_network_printer import Recorder

FULL = {"command": "push_status", "gcode_state": "RUNNING", "gcode_file": "farmhand-job-9.gcode",
        "mc_percent": 40, "mc_remaining_time": 12, "nozzle_temper": 219.6, "nozzle_target_temper": 220,
        "bed_temper": "54.9", "bed_target_temper": 55.0, "chamber_temper": 31, "print_error": 0, "hms": [],
        "ams": {"ams": [{"id": "0", "tray": [{"id": "0", "tray_type": "PLA", "tray_color": "F95959FF", "remain": 80},
                                             {"id": "1"}]}]},
        "vt_tray": {"id": "254", "tray_type": "PETG", "tray_color": "000000FF", "remain": -1}}


def test_p1_deltas_are_merged_onto_the_full_report() -> None:
    snapshot = PrintSnapshot()
    snapshot.absorb({"command": "push_status", "mc_percent": 10})
    assert not snapshot.complete, "a delta before the full report says nothing whole"
    snapshot.absorb(FULL)
    snapshot.absorb({"command": "push_status", "msg": 1, "mc_percent": 41, "nozzle_temper": 220.1})
    snapshot.read_version({"command": "get_version", "module": [{"name": "ota", "sw_ver": "01.07.00.00"}]})
    report = snapshot.report()
    assert report.state is DeviceState.PRINTING and report.job_phase is JobPhase.PRINTING
    assert report.job_file == "farmhand-job-9.gcode"
    assert report.progress == pytest.approx(0.41) and report.remaining_s == 720
    assert report.temperatures == {"T0": Heater(actual=220.1, target=220), "B": Heater(actual=54.9, target=55),
                                   "C": Heater(actual=31)}
    assert report.materials == (LoadedMaterial(slot="ams0/0", material="PLA", color_hex="#f95959", remaining_pct=80),
                                LoadedMaterial(slot="external", material="PETG", color_hex="#000000"))
    assert report.firmware == "Bambu Lab 01.07.00.00"


def test_end_states_and_errors_in_the_printers_words() -> None:
    snapshot = PrintSnapshot()
    snapshot.absorb({**FULL, "gcode_state": "FAILED", "print_error": 50348044})
    cancelled = snapshot.report()
    assert cancelled.state is DeviceState.IDLE and cancelled.job_phase is JobPhase.CANCELLED
    assert cancelled.error == "0300_400C: The task was canceled."
    snapshot.absorb({"gcode_state": "FAILED", "print_error": 0x03004006})
    assert snapshot.report().job_phase is JobPhase.FAILED
    assert snapshot.report().error == "0300_4006: The nozzle is clogged."
    snapshot.absorb({"gcode_state": "FINISH", "print_error": 0, "mc_percent": 100})
    assert snapshot.report().job_phase is JobPhase.FINISHED and snapshot.report().progress == 1.0
    snapshot.absorb({"gcode_state": "IDLE", "hms": [{"attr": 0x03000100, "code": 0x00010007}]})
    idle = snapshot.report()
    assert idle.state is DeviceState.ERROR, "a fatal HMS code on an idle printer is an error"
    assert idle.error == ("HMS_0300_0100_0001_0007: The heatbed temperature is abnormal; "
                          "the sensor may have an open circuit.")
    snapshot.absorb({"hms": [{"attr": 1, "code": 0x00030001}, "junk", {"attr": "x"}]})
    assert snapshot.report().state is DeviceState.IDLE and snapshot.report().error == "HMS_0000_0001_0003_0001"


def test_the_printers_address() -> None:
    assert BambuAddress.parse("192.168.1.40") == BambuAddress("192.168.1.40", 8883, 990)
    assert BambuAddress.parse("mqtts://p1s.local:18883?ftps_port=1990") == BambuAddress("p1s.local", 18883, 1990)
    with pytest.raises(ValueError, match="mqtts://"):
        BambuAddress.parse("http://192.168.1.40")


def test_the_example_config_builds_a_bambu_driver_and_a_missing_certificate_is_named(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    block = text[text.index("# [[devices]]\n# id = \"x1c-1\""):].split("\n\n")[0]
    uncommented = "\n".join(line[2:] for line in block.splitlines() if line.startswith("# "))
    path = tmp_path / "agent.toml"
    path.write_text(f'node_id = "pi-01"\n{uncommented}\n')
    config = load(AgentConfig, path, "FARMHAND_AGENT", environ={})
    printer = devices.create(config.devices[0], Recorder(), poll_interval_s=2.0)
    assert isinstance(printer, BambuPrinter)
    assert printer.address == BambuAddress("192.168.1.40", 8883, 990) and printer.serial == "01P00A000000000"
    assert printer.request_topic == "device/01P00A000000000/request"
    path.write_text(path.read_text().replace('ca_file = "/etc/farmhand/x1c-1.pem"', ""))
    with pytest.raises(ConfigError, match="the bambu driver needs ca_file"):
        load(AgentConfig, path, "FARMHAND_AGENT", environ={})


def test_odd_values_are_skipped_not_believed() -> None:
    snapshot = PrintSnapshot()
    snapshot.absorb({**FULL, "nozzle_temper": "NaN", "bed_temper": None, "mc_percent": "x", "chamber_temper": True,
                     "ams": {"ams": [{"id": "0", "tray": [{"id": "0", "tray_type": "PLA", "tray_color": "zz",
                                                           "remain": 250}, "junk"]}, "junk"]},
                     "vt_tray": ["not", "a", "tray"]})
    report = snapshot.report()
    assert report.temperatures == {} and report.progress is None
    assert report.materials == (LoadedMaterial(slot="ams0/0", material="PLA"),)
