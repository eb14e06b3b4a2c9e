"""G-code on the wire as plain strings: preparing lines, framing them, reading what firmware prints, profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.serial.gcode import (
    GcodeError,
    GcodeFile,
    checksum,
    frame,
    frame_text,
    prepare_file,
    prepare_lines,
    strip_line,
)
from agent.serial.actions import Decision, PrinterMessages
from agent.serial.profiles import ProfileError, bundled_profiles, load_profile
from agent.serial.responses import Kind, classify, parse_temperatures
from protocol.messages import Heater

# ----------------------------------------------------------------------------- framing


def test_frames_the_line_every_firmware_knows() -> None:
    # The RepRap wiki's example: every Marlin, Prusa and Repetier accepts exactly this.
    assert frame_text(0, "M110 N0") == b"N0 M110 N0*125\n"


@pytest.mark.parametrize("number", [0, 7, 99, 12345, 9_999_999])
def test_precomputed_xor_frames_the_same_as_computing_it_whole(number: int) -> None:
    command = b"G1 X10.5 Y-3 E0.0321 F1800"
    framed = frame(number, command, checksum(command))
    payload, _, tail = framed.rstrip(b"\n").rpartition(b"*")
    assert payload == b"N%d %s" % (number, command)
    assert int(tail) == checksum(payload)


@pytest.mark.parametrize(
    ("raw", "paren", "expected"),
    [
        ("G1 X10 ; move", False, "G1 X10"),
        ("   G28  \r\n", False, "G28"),
        ("; only a comment", False, ""),
        ("", False, ""),
        ("G1 X1 (slow) Y2", False, "G1 X1 (slow) Y2"),
        ("G1 X1 (slow) Y2", True, "G1 X1  Y2"),
        ("M117 (a (nested) note) done", True, "M117  done"),
    ],
)
def test_strips_comments_and_blanks(raw: str, paren: bool, expected: str) -> None:
    assert strip_line(raw, paren_comments=paren) == expected


def test_prepare_keeps_only_commands_in_order() -> None:
    job = prepare_lines(["; header", "G28 ; home", "", "   ", "G1 X1", "M104 S0"])
    assert job.commands == [b"G28", b"G1 X1", b"M104 S0"]
    assert job.xors == [checksum(c) for c in job.commands]
    assert job.count == 3


def test_a_star_in_a_command_is_refused_with_its_line() -> None:
    with pytest.raises(GcodeError, match=r"job.gcode:3: '\*' is reserved"):
        prepare_lines(["G28", "G1 X1", "M117 a*b"], where="job.gcode")


def test_a_line_too_long_for_the_firmware_is_refused_with_its_line() -> None:
    with pytest.raises(GcodeError, match=r"<gcode>:2: command longer than 81 bytes"):
        prepare_lines(["G28", "M117 " + "x" * 80], max_line_bytes=96)


def test_a_job_file_is_checked_whole_then_streamed_as_prepared(tmp_path: Path) -> None:
    path = tmp_path / "job.gcode"
    path.write_text("; sliced\nG28 ; home\n\nG1 X1 Y2\nM104 S0\n")
    job = GcodeFile.scan(path)
    assert (job.count, job.size) == (3, len(b"G28G1 X1 Y2M104 S0"))
    assert list(job) == list(prepare_file(path)) == [(b"G28", checksum(b"G28")), (b"G1 X1 Y2", checksum(b"G1 X1 Y2")),
                                                     (b"M104 S0", checksum(b"M104 S0"))]


def test_a_job_file_with_a_bad_line_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "bad.gcode"
    path.write_text("G28\n" * 1000 + "M117 50*50\n")
    with pytest.raises(GcodeError, match=r"bad.gcode:1001: '\*' is reserved"):
        GcodeFile.scan(path)


def test_a_job_file_that_shrinks_after_the_check_streams_what_is_left(tmp_path: Path) -> None:
    path = tmp_path / "job.gcode"
    path.write_text("G28\nG1 X1\nG1 X2\n")
    job = GcodeFile.scan(path)
    path.write_text("G28\n")
    assert [c for c, _ in job] == [b"G28"]


def test_prepare_file_keeps_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.gcode"
    path.write_bytes(b"; caf\xe9\nM117 caf\xe9\nG28\n")
    job = prepare_file(path)
    assert job.commands == [b"M117 caf\xe9", b"G28"]


# ----------------------------------------------------------------------------- firmware replies


def test_plain_ok() -> None:
    reply = classify("ok\n")
    assert reply.kind is Kind.OK and reply.line is None and reply.temperatures is None


def test_advanced_ok_reports_line_and_free_buffers() -> None:
    reply = classify("ok N123 P15 B3")
    assert (reply.kind, reply.line, reply.planner_free, reply.buffer_free) == (Kind.OK, 123, 15, 3)
    assert reply.temperatures is None  # B3 is buffer space, not a bed


def test_ok_with_temperatures_from_m105() -> None:
    reply = classify("ok T:210.5 /215.0 B:59.8 /60.0 @:127 B@:64")
    assert reply.kind is Kind.OK
    assert reply.temperatures == {"T0": Heater(actual=210.5, target=215.0), "B": Heater(actual=59.8, target=60.0)}


@pytest.mark.parametrize("text", ["Resend: 42", "Resend:42", "resend 42", "rs N42", "rs 42"])
def test_resend_requests(text: str) -> None:
    reply = classify(text)
    assert reply.kind is Kind.RESEND and reply.line == 42


def test_repetier_acknowledges_with_the_line_number_and_klipper_answers_m115_on_its_ok() -> None:
    assert classify("ok 117").line == 117
    reply = classify("ok FIRMWARE_NAME:Klipper FIRMWARE_VERSION:v0.12.0")
    assert reply.kind is Kind.OK and reply.fields == {"FIRMWARE_NAME": "Klipper", "FIRMWARE_VERSION": "v0.12.0"}


@pytest.mark.parametrize(
    "text",
    [
        "Error:checksum mismatch, Last Line: 41",
        "Error:Line Number is not Last Line Number+1, Last Line: 41",
        "Error:No Checksum with line number, Last Line: 41",
    ],
)
def test_line_errors_are_not_fatal(text: str) -> None:
    reply = classify(text)
    assert reply.kind is Kind.ERROR and reply.line_error and not reply.fatal


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Error:Printer halted. kill() called!", "Printer halted. kill() called!"),
        ("Error:Thermal Runaway, system stopped! Heater_ID: 0", "Thermal Runaway, system stopped! Heater_ID: 0"),
        ("Error:MINTEMP triggered, system stopped! Heater_ID: E0", "MINTEMP triggered, system stopped! Heater_ID: E0"),
        ("Error:MAXTEMP triggered, system stopped! Heater_ID: bed", "MAXTEMP triggered, system stopped! Heater_ID: bed"),
        ("!! Shutdown due to webhooks request", "Shutdown due to webhooks request"),
    ],
)
def test_fatal_errors_keep_the_firmwares_words(text: str, message: str) -> None:
    reply = classify(text)
    assert reply.kind is Kind.ERROR and reply.fatal and reply.message == message


def test_other_errors_are_reported_but_not_fatal() -> None:
    reply = classify("!! Move out of range: 0.000 0.000 300.000 [0.000]")
    assert reply.kind is Kind.ERROR and not reply.fatal and not reply.line_error


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("echo:busy: processing", Kind.BUSY),
        ("busy: paused for user", Kind.BUSY),
        ("wait", Kind.WAIT),
        ("start", Kind.START),
        ("echo:Unknown command: \"G999\"", Kind.ECHO),
        ("Marlin 2.1.2", Kind.OTHER),
    ],
)
def test_other_line_kinds(text: str, kind: Kind) -> None:
    assert classify(text).kind is kind


def test_temperature_reports_while_heating() -> None:
    reply = classify(" T:186.61 /210.00 B:59.99 /60.00 @:127 B@:0 W:?")
    assert reply.kind is Kind.TEMPERATURE
    assert reply.temperatures == {"T0": Heater(actual=186.61, target=210.0), "B": Heater(actual=59.99, target=60.0)}


def test_numbered_tools_win_over_the_active_tool_alias() -> None:
    temps = parse_temperatures("T:200.0 /200.0 T0:200.0 /200.0 T1:150.0 /0.0 B:60.0 /60.0 C:30.0 /0.0 @:0")
    assert set(temps) == {"T0", "T1", "B", "C"}
    assert temps["T1"] == Heater(actual=150.0, target=0.0)


def test_host_action_commands() -> None:
    pause = classify("//action:pause")
    note = classify("// action:notification Filament runout")
    assert (pause.kind, pause.name) == (Kind.ACTION, "pause")
    assert (note.kind, note.name, note.message) == (Kind.ACTION, "notification", "Filament runout")


def test_m115_firmware_line_and_capabilities() -> None:
    reply = classify("FIRMWARE_NAME:Marlin 2.1.2 (Jan  1 2026 12:00:00) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin "
                     "PROTOCOL_VERSION:1.0 MACHINE_TYPE:Ender-3 V2 EXTRUDER_COUNT:1")
    assert reply.kind is Kind.FIRMWARE
    assert reply.fields == {
        "FIRMWARE_NAME": "Marlin 2.1.2 (Jan  1 2026 12:00:00)",
        "SOURCE_CODE_URL": "github.com/MarlinFirmware/Marlin",
        "PROTOCOL_VERSION": "1.0",
        "MACHINE_TYPE": "Ender-3 V2",
        "EXTRUDER_COUNT": "1",
    }
    cap = classify("Cap:AUTOREPORT_TEMP:1")
    off = classify("Cap:EEPROM:0")
    assert (cap.kind, cap.name, cap.enabled) == (Kind.CAPABILITY, "AUTOREPORT_TEMP", True)
    assert (off.name, off.enabled) == ("EEPROM", False)


# ----------------------------------------------------------------------------- profiles


def test_seven_dialects_ship_with_farmhand() -> None:
    assert {"marlin2", "prusa-mk3s", "prusa-buddy", "reprapfirmware", "klipper", "smoothieware",
            "repetier"} <= set(bundled_profiles())


@pytest.mark.parametrize("name", bundled_profiles())
def test_bundled_profiles_load(name: str) -> None:
    profile = load_profile(name, environ={})
    assert profile.name == name and profile.rx_buffer >= 64 and profile.cancel_script


def test_marlin_profile_matches_stock_marlin() -> None:
    profile = load_profile("marlin2", environ={})
    assert (profile.rx_buffer, profile.checksums, profile.max_line_bytes) == (128, True, 96)


def test_profiles_dir_comes_first_and_env_overrides(tmp_path: Path) -> None:
    (tmp_path / "marlin2.toml").write_text('name = "marlin2"\nrx_buffer = 64\n')
    env = {"FARMHAND_PROFILES_DIR": str(tmp_path)}
    assert load_profile("marlin2", environ=env).rx_buffer == 64
    env["FARMHAND_PROFILE_MARLIN2__RX_BUFFER"] = "256"
    assert load_profile("marlin2", environ=env).rx_buffer == 256


def test_a_temperature_pattern_must_name_its_groups(tmp_path: Path) -> None:
    (tmp_path / "odd.toml").write_text('name = "odd"\ntemperature_pattern = "T:(\\\\d+)"\n')
    with pytest.raises(ProfileError, match=r"odd.toml: temperature_pattern: .*needs the groups"):
        load_profile("odd", environ={"FARMHAND_PROFILES_DIR": str(tmp_path)})


def test_invalid_profile_names_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text('name = "tiny"\nrx_buffer = 4\n')
    with pytest.raises(ProfileError, match=r"tiny.toml: rx_buffer: Input should be greater than or equal to 16"):
        load_profile("tiny", environ={"FARMHAND_PROFILES_DIR": str(tmp_path)})


def test_missing_profile_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"'nope' not found \(looked in .*" + str(tmp_path)):
        load_profile("nope", environ={"FARMHAND_PROFILES_DIR": str(tmp_path)})


def test_profile_names_cannot_walk_the_filesystem() -> None:
    with pytest.raises(ProfileError, match="a name is letters"):
        load_profile("../../etc/passwd", environ={})


# ----------------------------------------------------------------------------- host actions


def test_host_actions_ask_the_host_to_pause_resume_or_cancel_only_when_it_makes_sense() -> None:
    messages = PrinterMessages()
    printing, paused = {"printing": True, "paused": False}, {"printing": False, "paused": True}
    assert messages.decide("pause", "", **printing) == Decision("pause", "paused on the printer")
    assert messages.decide("paused", "", **printing) == Decision("pause", "the printer paused itself", script=False)
    assert messages.decide("pause", "", **paused).act == "nothing"
    assert messages.decide("resume", "", **paused) == Decision("resume")
    assert messages.decide("resumed", "", **paused) == Decision("resume", script=False)
    assert messages.decide("cancel", "", **paused).act == "cancel"


def test_a_filament_runout_pauses_and_alerts_even_between_jobs() -> None:
    messages = PrinterMessages()
    runout = messages.decide("out_of_filament", "T0", printing=True, paused=False)
    assert (runout.act, runout.reason, runout.alert) == ("pause", "out of filament (T0)", "filament runout (T0)")
    idle = messages.decide("out_of_filament", "", printing=False, paused=False)
    assert (idle.act, idle.alert) == ("nothing", "filament runout")


def test_prompts_and_notifications_are_kept_for_whoever_shows_them() -> None:
    messages = PrinterMessages()
    for action, args in [("notification", "Heating..."), ("prompt_begin", "FilamentRunout T0"),
                         ("prompt_choice", "Purge more"), ("prompt_choice", "Continue"), ("prompt_show", "")]:
        assert messages.decide(action, args, printing=True, paused=False).act == "nothing"
    assert messages.notification == "Heating..." and messages.prompt == ["FilamentRunout T0", "Purge more", "Continue"]
    messages.decide("prompt_end", "", printing=True, paused=False)
    assert messages.prompt is None
