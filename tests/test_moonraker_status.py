"""How Klipper's status objects (as Moonraker relays them) become the agent's reports, and the Klippy simulator's
protocol as Moonraker sees it on the unix socket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agent.devices.moonraker_state import Interest, KlipperStatus, heater_key
from agent.devices.network import JobPhase
from farmhand.sim.klippy import KlippySimulator
from protocol.messages import DeviceState, Heater


def printing(**stats: Any) -> KlipperStatus:
    status = KlipperStatus()
    status.replace({
        "webhooks": {"state": "ready", "state_message": "Printer is ready"},
        "print_stats": {"filename": "farmhand-job-7.gcode", "state": "printing", "message": "",
                        "print_duration": 100.0, **stats},
        "virtual_sdcard": {"progress": 0.25, "is_active": True},
        "extruder": {"temperature": 209.5, "target": 210.0},
        "heater_bed": {"temperature": 60.0, "target": 60.0},
    })
    return status


def test_deltas_merge_onto_the_snapshot() -> None:
    status = printing()
    status.merge({"extruder": {"temperature": 210.0}})
    report = status.report()
    assert report.state is DeviceState.PRINTING and report.job_phase is JobPhase.PRINTING
    assert report.job_file == "farmhand-job-7.gcode"
    assert report.temperatures == {"T0": Heater(actual=210.0, target=210.0), "B": Heater(actual=60.0, target=60.0)}
    status.merge({"print_stats": {"state": "paused"}})
    assert status.report().state is DeviceState.PAUSED
    assert status.report().job_file == "farmhand-job-7.gcode", "a delta without the file name keeps it"


def test_time_left_is_the_rate_so_far_carried_over_the_rest() -> None:
    assert printing().report().remaining_s == 300.0  # 100 s for a quarter: 300 s for the rest
    early = printing(print_duration=10.0)
    early.merge({"virtual_sdcard": {"progress": 0.01}})
    assert early.report().remaining_s is None, "1 % is too little to extrapolate from and no slicer estimate"
    early.estimated_time["farmhand-job-7.gcode"] = 1000.0
    assert early.report().remaining_s == 990.0


def test_display_status_progress_wins_over_the_file_position() -> None:
    status = printing()
    status.merge({"display_status": {"progress": 0.5}})
    assert status.report().progress == 0.5
    assert printing().report().progress == 0.25


def test_a_shutdown_mid_print_fails_the_job_in_klippers_words() -> None:
    status = printing()
    words = "Shutdown due to M112 command\nOnce the underlying issue is corrected, use the\n..."
    status.merge({"webhooks": {"state": "shutdown", "state_message": words}, "print_stats": {"state": "paused"}})
    report = status.report()
    assert report.state is DeviceState.ERROR and report.job_phase is JobPhase.FAILED
    assert report.error == words.strip()


def test_a_print_error_leaves_the_printer_idle_and_the_job_failed_with_klippers_message() -> None:
    status = printing()
    status.merge({"print_stats": {"state": "error", "message": "Must home axis first: 10.000 10.000 0.200"}})
    report = status.report()
    assert report.state is DeviceState.IDLE and report.job_phase is JobPhase.FAILED
    assert report.error == "Must home axis first: 10.000 10.000 0.200"


def test_klippy_gone_is_disconnected_with_nothing_stale() -> None:
    status = printing()
    status.klippy_gone()
    report = status.report()
    assert report.state is DeviceState.DISCONNECTED and report.job_file is None and report.temperatures == {}


def test_only_what_the_config_has_is_asked_for_and_fast_readings_are_polled() -> None:
    interest = Interest.of(["webhooks", "print_stats", "extruder", "extruder1", "heater_generic chamber",
                            "virtual_sdcard", "gcode_move"])
    assert set(interest.subscribed) == {"webhooks", "print_stats", "extruder", "extruder1", "heater_generic chamber",
                                        "virtual_sdcard"}
    assert "display_status" not in interest.polled and "heater_bed" not in interest.all()
    assert interest.subscribed["extruder"] == ["target"] and interest.polled["extruder"] == ["temperature"]
    assert "print_duration" not in interest.subscribed["print_stats"], "it changes four times a second"
    assert set(interest.all()["print_stats"]) == {"filename", "state", "message", "print_duration"}
    assert [heater_key(n) for n in ("extruder", "extruder1", "heater_bed", "temperature_sensor chamber", "fan")] \
        == ["T0", "T1", "B", "C", None]


class SimClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.next_id = reader, writer, 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.writer.write(json.dumps({"id": self.next_id, "method": method, "params": params}).encode() + b"\x03")
        while True:
            message = json.loads((await asyncio.wait_for(self.reader.readuntil(b"\x03"), 5))[:-1])
            if message.get("id") == self.next_id:
                return message

    async def notification(self, method: str) -> dict[str, Any]:
        while True:
            message = json.loads((await asyncio.wait_for(self.reader.readuntil(b"\x03"), 5))[:-1])
            if message.get("method") == method:
                return message


@pytest.fixture
async def sim_client(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "gcodes").mkdir()
    (tmp_path / "gcodes" / "part.gcode").write_text("G1 X1\n" * 1000)
    sim = KlippySimulator(tmp_path / "klippy.sock", tmp_path / "gcodes", lines_per_s=100)
    await sim.start()
    reader, writer = await asyncio.open_unix_connection(str(tmp_path / "klippy.sock"))
    try:
        yield sim, SimClient(reader, writer)
    finally:
        writer.close()
        await sim.stop()


async def test_the_klippy_simulator_speaks_the_webhooks_protocol(sim_client) -> None:  # type: ignore[no-untyped-def]
    sim, client = sim_client
    info = (await client.call("info", client_info={"program": "Moonraker"}))["result"]
    assert info["state"] == "ready" and info["state_message"] == "Printer is ready"
    answer = (await client.call("objects/subscribe", objects={"print_stats": ["state", "filename"], "nope": None},
                                response_template={"method": "process_status_update"}))["result"]
    assert answer["status"] == {"print_stats": {"state": "standby", "filename": ""}, "nope": {}}
    assert "result" in await client.call("gcode/script", script="SDCARD_PRINT_FILE FILENAME=part.gcode")
    update = await client.notification("process_status_update")
    assert update["params"]["status"]["print_stats"]["state"] == "printing"
    busy = await client.call("gcode/script", script="SDCARD_PRINT_FILE FILENAME=part.gcode")
    assert busy["error"] == {"error": "WebRequestError", "message": "SD busy"}
    missing = await client.call("no/such/endpoint")
    assert "No registered callback" in missing["error"]["message"]
    assert "result" in await client.call("emergency_stop")
    assert sim.printer.state == "shutdown"
    refused = await client.call("gcode/script", script="G28")
    assert refused["error"]["message"] == "Shutdown due to webhooks request"


def test_the_config_example_builds_a_moonraker_driver() -> None:
    import tomllib

    from agent import devices
    from agent.devices.base import declared_capabilities
    from agent.config import DeviceConfig
    from agent.devices.moonraker import MoonrakerPrinter

    example = (Path(__file__).resolve().parent.parent / "systemd" / "agent.example.toml").read_text()
    block = example.split('# id = "voron-1"')[1].split("\n\n")[0]
    table = tomllib.loads('id = "voron-1"' + block.replace("\n# ", "\n"))
    config = DeviceConfig.model_validate(table)

    class Quiet:
        def event(self, body: object) -> None: ...
        def status(self, status: object) -> None: ...
        def telemetry(self, telemetry: object) -> None: ...

    printer = devices.create(config, Quiet(), poll_interval_s=2.0)
    assert isinstance(printer, MoonrakerPrinter)
    assert printer.url == "http://voron.local:7125" and printer.api_key == "0123456789abcdef0123456789abcdef"
    assert printer.offline_after_s == 10
    assert declared_capabilities(printer) == ["console", "file_upload"]
