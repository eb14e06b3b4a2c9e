"""Firmware dialects as TOML files: buffers, reply conventions, error words and the pause/resume/cancel scripts.

Profiles are data, not code, so a farm can add its own printer without a release.
They are looked up, first found wins, in ``$FARMHAND_PROFILES_DIR``, the
repository's ``firmware-profiles/`` (a source checkout), and
``<sys.prefix>/share/farmhand/firmware-profiles`` (an installed agent).
Any field can be overridden from the environment, e.g.
``FARMHAND_PROFILE_MARLIN2__RX_BUFFER=64``.

The ``[emulation]`` table says how the firmware words its replies; only the
virtual printer reads it, so that the simulator speaks each dialect the way
the profile describes it.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from protocol.config import ConfigError, load

from .host import STREAMING_COMMANDS
from .responses import FATAL_MARKERS, LINE_ERROR_MARKERS, TEMPERATURE_PATTERN, FirmwareState

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ProfileError(ConfigError):
    """No such profile, or it is invalid; the text says which files were tried."""


class Emulation(BaseModel):
    """How the firmware words what it prints: the virtual printer's script for this dialect."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    firmware_name: str = "Marlin 2.1.2.1 (Farmhand virtual printer)"
    firmware_url: str = "github.com/MarlinFirmware/Marlin"
    banner: list[str] = Field(default_factory=lambda: ["start", "echo:Marlin 2.1.2.1"])
    temperature_report: str = Field(
        "T:{T0:.2f} /{T0_target:.2f} B:{B:.2f} /{B_target:.2f} @:{T0_power} B@:{B_power}",
        description="format of an M105 report; fields T0, T0_target, T0_power, B, B_target, B_power",
    )
    ok_temperatures: bool = Field(True, description="M105's report rides on its ok ('ok T:…'), else it precedes it")
    firmware_on_ok: bool = Field(False, description="M115's answer rides on its ok, without Cap: lines (Klipper)")
    heating_report_suffix: str = " W:?"
    busy: str = "echo:busy: processing"
    busy_interval_s: float = Field(2.0, gt=0, description="keep-alive period of a long command (Marlin's default)")
    resend: str = "Resend: {line}"
    checksum_error: str = "Error:checksum mismatch, Last Line: {last}"
    line_number_error: str = "Error:Line Number is not Last Line Number+1, Last Line: {last}"
    missing_checksum_error: str = "Error:No Checksum with line number, Last Line: {last}"
    unknown_command: str = 'echo:Unknown command: "{command}"'
    error: str = "Error:{message}"
    kill_message: str = Field("Printer halted. kill() called!", description="what kill() (and M112) says")
    thermal_runaway: list[str] = Field(
        default_factory=lambda: ["Error:Thermal Runaway, system stopped! Heater_ID: 0",
                                 "Error:Printer halted. kill() called!"])
    filament_runout: list[str] = Field(
        default_factory=lambda: ["//action:out_of_filament T0", "echo:busy: paused for user"])
    capabilities: dict[str, int] = Field(default_factory=dict, description="Cap: lines of M115, beyond the defaults")
    ok_when: Literal["executed", "queued"] = Field(
        "executed", description="Marlin says ok once a command ran; Repetier as soon as it is queued")
    sd_card: bool = True
    emergency_parser: bool | None = Field(
        None, description="reads M112 as it arrives; None: as M115's EMERGENCY_PARSER capability says")
    position_report: str = Field("", description="format of M114's report (fields X, Y, Z, E); empty: Marlin's")
    halt_lines: list[str] | None = Field(
        None, description="what it says when it halts ({message}); None: its error line with the message (Marlin)")
    halted_reply: list[str] = Field(
        default_factory=list,
        description="a halted firmware still reads lines and answers each with these ({message}), then ok "
                    "(Klipper); empty: it answers nothing more (Marlin)")
    halted_runs: list[str] = Field(default_factory=list, description="commands a halted firmware still runs")
    restart_commands: list[str] = Field(default_factory=list, description="commands that restart the firmware")
    restart_lines: list[str] = Field(default_factory=list, description="said as a restart begins, after its ok")
    ready_lines: list[str] = Field(default_factory=list, description="said when it is back from a restart")
    idle_wait_s: float = Field(0.0, ge=0, description="say 'wait' this often while idle with nothing to do (Repetier)")


class FirmwareProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    rx_buffer: int = Field(128, ge=16, le=65536, description="firmware receive buffer, bytes")
    command_queue: int = Field(4, ge=1, le=256, description="commands the firmware holds parsed (Marlin's BUFSIZE)")
    planner_slots: int = Field(16, ge=1, le=1024, description="moves the planner holds (BLOCK_BUFFER_SIZE)")
    max_line_bytes: int = Field(96, ge=32, le=4096, description="longest line the firmware accepts, framing included")
    checksums: bool = Field(True, description="send N<line> … *<xor> and honour Resend")
    flow: Literal["window", "one"] = Field(
        "window", description="'window': as many lines in flight as fit rx_buffer; 'one': wait for each ok")
    advanced_ok: bool = Field(False, description="the firmware is built with ADVANCED_OK (the host detects it anyway)")
    resend_ok: bool = Field(True, description="a resend request is followed by an ok of its own (Marlin, not Smoothie)")
    paren_comments: bool = Field(False, description="strip (…) comments as well as ;…")
    hello: str = Field("M110 N0", description="sent until the firmware answers ok when the port opens")
    temperature_command: str = "M105"
    autoreport_command: str = Field("M155 S{seconds}", description="asks for temperature reports without polling")
    emergency_stop: str = "M112"
    break_wait: str = Field("M108", description="ends a heating wait (M109/M190) at once")
    quick_stop: str = Field("M410", description="stops moves at once")
    cancel_quick_stop: bool = Field(
        False, description="on cancel, drop the moves already planned (M410, out of band): the head stops at once "
                           "instead of finishing a few seconds of moves, at the cost of its position until homed")
    capabilities: list[str] = Field(
        default_factory=list, description="capabilities assumed before (or without) an M115 answer")
    answer_timeout_s: float = Field(
        6.0, gt=0, description="silence, with lines unanswered and no busy keep-alive, before the host probes")
    probe_limit: int = Field(3, ge=1, description="unanswered probes before the printer counts as not answering")
    heating_commands: list[str] = Field(default_factory=lambda: ["M109", "M190", "M191", "M116"])
    streaming_commands: list[str] = Field(
        default_factory=lambda: list(STREAMING_COMMANDS),
        description="commands that never make the firmware wait (G0/G1 only while the planner has room)")
    pause_script: list[str] = Field(default_factory=list)
    resume_script: list[str] = Field(default_factory=list)
    cancel_script: list[str] = Field(default_factory=list)
    finish_script: list[str] = Field(
        default_factory=lambda: ["M400"],
        description="appended to every job so that 'completed' means the moves are done, not just sent",
    )
    error_prefixes: list[str] = Field(default_factory=lambda: ["Error:", "!!"])
    fatal_errors: list[str] = Field(
        default_factory=lambda: list(FATAL_MARKERS),
        description="lower-case fragments of error lines after which the firmware has stopped",
    )
    line_errors: list[str] = Field(
        default_factory=lambda: list(LINE_ERROR_MARKERS),
        description="lower-case fragments of errors about a line that was rejected, not run",
    )
    refusals: list[str] = Field(
        default_factory=list,
        description="starts of lines that refuse the command being answered without stopping the firmware "
                    "(Klipper's '// Unknown command:'); reported with the command they refuse")
    state_lines: dict[str, FirmwareState] = Field(
        default_factory=dict,
        description="lines announcing the firmware's state: 'halted' (it answers, runs nothing), 'restarting', "
                    "'ready' (back after a halt or restart); Klipper's '// Klipper state: …'")
    recovery_commands: list[str] = Field(
        default_factory=list,
        description="commands that bring a halted firmware back (Klipper's FIRMWARE_RESTART); the console accepts "
                    "them while the printer is in error")
    temperature_pattern: str = Field(
        TEMPERATURE_PATTERN,
        description="regex for one heater in a report: groups 'name', 'actual' and (optional) 'target'",
    )
    emulation: Emulation = Field(default_factory=Emulation)

    @field_validator("temperature_pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if not {"name", "actual"} <= set(compiled.groupindex):
            raise ValueError("needs the groups (?P<name>…) and (?P<actual>…)")
        return pattern

    @field_validator("recovery_commands")
    @classmethod
    def _upper(cls, words: list[str]) -> list[str]:
        return [w.upper() for w in words]

    @field_validator("fatal_errors", "line_errors")
    @classmethod
    def _lower(cls, words: list[str]) -> list[str]:
        return [w.lower() for w in words]


def search_path(environ: dict[str, str] | None = None) -> list[Path]:
    env = os.environ if environ is None else environ
    dirs = []
    if env.get("FARMHAND_PROFILES_DIR"):
        dirs.append(Path(env["FARMHAND_PROFILES_DIR"]))
    dirs.append(Path(__file__).resolve().parents[2] / "firmware-profiles")
    dirs.append(Path(sys.prefix) / "share" / "farmhand" / "firmware-profiles")
    return dirs


def bundled_profiles() -> list[str]:
    """Names of the dialects shipped with Farmhand (machine models live in a subfolder and are not dialects)."""
    names: set[str] = set()
    for d in search_path({}):
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def load_profile(name: str, environ: dict[str, str] | None = None) -> FirmwareProfile:
    if not _NAME.match(name):
        raise ProfileError(f"firmware profile {name!r}: a name is letters, digits, '.', '_' and '-'")
    dirs = search_path(environ)
    for d in dirs:
        path = d / f"{name}.toml"
        if path.is_file():
            prefix = "FARMHAND_PROFILE_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
            try:
                profile = load(FirmwareProfile, path, prefix, environ)
            except ConfigError as exc:
                raise ProfileError(f"firmware profile {exc}") from None
            if profile.name != name:
                raise ProfileError(f"firmware profile {path}: name = {profile.name!r}, expected {name!r}")
            return profile
    tried = ", ".join(str(d) for d in dirs)
    raise ProfileError(f"firmware profile {name!r} not found (looked in {tried})")
