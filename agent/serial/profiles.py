"""Firmware dialects as TOML files: buffer size, checksums, and the scripts run on pause, resume and cancel.

Profiles are data, not code, so a farm can add its own printer without a release.
They are looked up, first found wins, in ``$FARMHAND_PROFILES_DIR``, the
repository's ``firmware-profiles/`` (a source checkout), and
``<sys.prefix>/share/farmhand/firmware-profiles`` (an installed agent).
Any field can be overridden from the environment, e.g.
``FARMHAND_PROFILE_MARLIN2__RX_BUFFER=64``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from protocol.config import ConfigError, load

from .responses import FATAL_MARKERS

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ProfileError(ConfigError):
    """No such profile, or it is invalid; the text says which files were tried."""


class FirmwareProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    rx_buffer: int = Field(128, ge=16, le=65536, description="firmware receive buffer, bytes")
    max_line_bytes: int = Field(96, ge=32, le=4096, description="longest line the firmware accepts, framing included")
    checksums: bool = Field(True, description="send N<line> … *<xor> and honour Resend")
    advanced_ok: bool = False
    paren_comments: bool = Field(False, description="strip (…) comments as well as ;…")
    hello: str = Field("M110 N0", description="sent until the firmware answers ok when the port opens")
    temperature_command: str = "M105"
    emergency_stop: str = "M112"
    pause_script: list[str] = Field(default_factory=list)
    resume_script: list[str] = Field(default_factory=list)
    cancel_script: list[str] = Field(default_factory=list)
    finish_script: list[str] = Field(
        default_factory=lambda: ["M400"],
        description="appended to every job so that 'completed' means the moves are done, not just sent",
    )
    fatal_errors: list[str] = Field(
        default_factory=lambda: list(FATAL_MARKERS),
        description="lower-case fragments of error lines after which the firmware has stopped",
    )


def search_path(environ: dict[str, str] | None = None) -> list[Path]:
    env = os.environ if environ is None else environ
    dirs = []
    if env.get("FARMHAND_PROFILES_DIR"):
        dirs.append(Path(env["FARMHAND_PROFILES_DIR"]))
    dirs.append(Path(__file__).resolve().parents[2] / "firmware-profiles")
    dirs.append(Path(sys.prefix) / "share" / "farmhand" / "firmware-profiles")
    return dirs


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
