"""The OctoPrint driver's parts that need no server: how OctoPrint's push messages read as
our state (the cases a live server rarely shows on cue), and its config example.

The message shapes are OctoPrint 1.11's, as its socket sends them (tests/test_octoprint.py
shows the same behaviour against the real server).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from agent import devices
from agent.config import DeviceConfig
from agent.devices.octoprint import OctoPrintPrinter
from agent.devices.network import JobPhase
from agent.devices.octoprint.console import ConsoleReplies, OwedAnswers, console_reply
from agent.devices.octoprint.state import (
    Outcome,
    PrinterView,
    device_state,
    firmware_error,
    outcome_of,
    printer_unconnected,
)
from protocol.messages import DeviceState, Heater
from tests.test_network_printer import Recorder

_FLAGS = ("operational", "printing", "cancelling", "pausing", "resuming", "finishing", "closedOrError", "error",
          "paused", "ready", "sdReady")


def state(text: str, *flags: str, error: str = "") -> dict[str, Any]:
    return {"text": text, "flags": {f: f in flags for f in _FLAGS}, "error": error}


@pytest.mark.parametrize("given, expected", [
    (state("Operational", "operational", "ready"), DeviceState.IDLE),
    (state("Starting", "operational"), DeviceState.PRINTING),
    (state("Printing", "operational", "printing"), DeviceState.PRINTING),
    (state("Cancelling", "operational", "cancelling"), DeviceState.PRINTING),
    (state("Pausing", "operational", "pausing", "printing"), DeviceState.PAUSED),
    (state("Paused", "operational", "paused"), DeviceState.PAUSED),
    (state("Offline", "closedOrError"), DeviceState.DISCONNECTED),
    (state("Detecting serial connection"), DeviceState.DISCONNECTED),
    (state("Offline after error", "closedOrError", error="MINTEMP triggered!"), DeviceState.ERROR),
    (state("Error: Printer halted. kill() called!", "closedOrError", "error"), DeviceState.ERROR),
])
def test_octoprint_states_map_onto_ours(given: dict[str, Any], expected: DeviceState) -> None:
    assert device_state(given) is expected


def test_only_a_printer_closed_without_an_error_is_connected_again() -> None:
    assert printer_unconnected(state("Offline", "closedOrError"))
    assert printer_unconnected(state("Closed", "closedOrError"))
    assert not printer_unconnected(state("Offline after error", "closedOrError", error="M112"))
    assert not printer_unconnected(state("Operational", "operational"))


def test_a_cancel_is_one_cancel_although_octoprint_also_sends_print_failed() -> None:
    name = {"name": "farmhand-job-1.gcode", "path": "farmhand-job-1.gcode"}
    cancelled = outcome_of("PrintCancelled", name, None)
    after = outcome_of("PrintFailed", {**name, "reason": "cancelled"}, cancelled)
    assert after == Outcome("farmhand-job-1.gcode", JobPhase.CANCELLED, "cancelled")
    failed = outcome_of("PrintFailed", {**name, "reason": "error", "error": "MINTEMP triggered!"}, None)
    assert failed == Outcome("farmhand-job-1.gcode", JobPhase.FAILED, "MINTEMP triggered!")
    assert outcome_of("PrintStarted", name, failed) is None
    assert outcome_of("ZChange", {}, failed) is failed


def test_a_view_is_a_full_snapshot_although_current_messages_carry_only_news() -> None:
    view = PrinterView()
    view.update({"state": state("Printing", "operational", "printing"),
                 "job": {"file": {"name": "farmhand-job-7.gcode", "path": "folder/farmhand-job-7.gcode"}},
                 "progress": {"completion": 42.5, "printTimeLeft": 90},
                 "temps": [{"time": 1, "tool0": {"actual": 200.1, "target": 210}, "tool1": {"actual": 25.0},
                            "bed": {"actual": 60.0, "target": 60.0}, "chamber": {"actual": None, "target": None}}],
                 "logs": []})
    view.update({"state": state("Printing", "operational", "printing"),
                 "job": {"file": {"path": "folder/farmhand-job-7.gcode"}},
                 "progress": {"completion": 43.0, "printTimeLeft": 88}, "temps": [], "logs": ["Recv: ok"]})
    report = view.report()
    assert report.state is DeviceState.PRINTING and report.job_phase is JobPhase.PRINTING
    assert report.job_file == "folder/farmhand-job-7.gcode"
    assert report.progress == pytest.approx(0.43) and report.remaining_s == 88
    assert report.temperatures == {"T0": Heater(actual=200.1, target=210), "T1": Heater(actual=25.0),
                                   "B": Heater(actual=60.0, target=60.0)}


def test_a_failed_print_stays_reported_with_its_file_after_octoprint_deselects_it() -> None:
    view = PrinterView()
    view.update({"state": state("Offline after error", "closedOrError", error="MINTEMP triggered! - ok"),
                 "job": {"file": {"name": None}}, "progress": {},
                 "logs": ["Recv: Error:MINTEMP triggered!", "Recv: ok"]})
    view.outcome = Outcome("farmhand-job-9.gcode", JobPhase.FAILED, "MINTEMP triggered! - ok")
    report = view.report()
    assert (report.state, report.job_file, report.job_phase) == \
        (DeviceState.ERROR, "farmhand-job-9.gcode", JobPhase.FAILED)
    assert report.error == "MINTEMP triggered! - ok"
    assert view.last_firmware_error == "MINTEMP triggered!"


def test_an_error_without_octoprints_summary_uses_the_firmwares_last_error_words() -> None:
    view = PrinterView()
    view.update({"state": state("Error", "closedOrError", "error"),
                 "logs": ["Recv: Error:Thermal Runaway, system stopped!"]})
    assert view.report().error == "Thermal Runaway, system stopped!"


def test_firmware_lines_are_told_from_chatter() -> None:
    assert firmware_error("Recv: Error:MINTEMP triggered!") == "MINTEMP triggered!"
    assert firmware_error("Recv: !! Lost communication with MCU 'mcu'") == "Lost communication with MCU 'mcu'"
    assert firmware_error("Send: N5 G28*18") is None
    assert console_reply("Recv: ok T:21.30/ 0.00 B:21.30/ 0.00 @:64") == "ok T:21.30/ 0.00 B:21.30/ 0.00 @:64"
    assert console_reply("Recv: FIRMWARE_NAME:Virtual Marlin 1.0") == "FIRMWARE_NAME:Virtual Marlin 1.0"
    assert console_reply("Recv: T:21.30/ 0.00 B:21.30/ 0.00 @:64") is None  # an autoreport, not an answer
    assert console_reply("Recv: wait") is None
    assert console_reply("Send: M105") is None


def test_console_replies_are_the_ones_after_our_commands_went_out_counted_by_their_oks() -> None:
    replies = ConsoleReplies(["M115", "M105"])
    for line in ["Recv: ok",  # the answer to a command sent before ours
                 "Send: M115", "Recv: FIRMWARE_NAME:Virtual Marlin 1.0", "Recv: ok",
                 "Send: M27",  # OctoPrint's own query, between ours
                 "Send: M105", "Recv: T:21.30/ 0.00 @:64", "Recv: ok", "Recv: wait"]:
        replies.seen(line)
        assert not replies.done.is_set()
    replies.seen("Recv: ok T:21.30/ 0.00 B:21.30/ 0.00 @:64")
    replies.seen("Recv: ok")  # the same log batch goes on with answers to later commands
    assert replies.done.is_set()
    assert replies.lines == ["FIRMWARE_NAME:Virtual Marlin 1.0", "ok", "ok", "ok T:21.30/ 0.00 B:21.30/ 0.00 @:64"]


def test_oks_for_octoprints_own_commands_are_not_taken_for_ours() -> None:
    """OctoPrint polls the temperature on its own: a poll sent before the request, or answered before our
    first command went out, must not make an ``ok`` of ours look owed to it (the console then waited on)."""
    owed = OwedAnswers()
    for line in ["Send: M105", "Recv: ok T:21.0 /0.0", "Send: M27"]:  # M27 still unanswered
        owed.seen(line)
    replies = ConsoleReplies(["M115", "M105"], owed=owed.count)
    for line in ["Recv: SD printing byte 0/0", "Recv: ok",  # the answer to M27, sent before the request
                 "Send: M105", "Recv: ok T:21.1 /0.0",  # a poll sent and answered before ours went out
                 "Send: M115", "Recv: FIRMWARE_NAME:Virtual Marlin 1.0", "Recv: ok",
                 "Send: M105"]:
        owed.seen(line)
        replies.seen(line)
        assert not replies.done.is_set()
    replies.seen("Recv: ok T:21.2 /0.0")
    assert replies.done.is_set()
    assert replies.lines == ["FIRMWARE_NAME:Virtual Marlin 1.0", "ok", "ok T:21.2 /0.0"]
    owed.seen("Recv: ok T:21.2 /0.0")
    assert owed.count == 0


def test_the_config_example_builds_an_octoprint_driver() -> None:
    example = (Path(__file__).parent.parent / "systemd" / "agent.example.toml").read_text()
    block = example[example.index('# id = "octopi-1"'):].split("\n\n", 1)[0]
    table = tomllib.loads("\n".join(line.removeprefix("# ") for line in block.splitlines()))
    printer = devices.create(DeviceConfig.model_validate(table), Recorder(), poll_interval_s=2.0)
    assert isinstance(printer, OctoPrintPrinter) and printer.url == "http://octopi.local"
    with pytest.raises(ValueError, match="needs api_key"):
        DeviceConfig.model_validate({**table, "api_key": None})

