"""A real OctoPrint (from PyPI, installed by ``scripts/peers/octoprint.sh``) for the driver's tests.

Each test module gets its own basedir under tmp: a config with the bundled virtual
printer enabled and made fast, no first-run wizard, access control with one admin
user made on the command line, and an application key provisioned for that user
the way the Application Keys plugin stores its keys. Bound to 127.0.0.1 on a free port.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
OCTOPRINT = ROOT / ".peers" / "octoprint" / "bin" / "octoprint"
USER = "farmhand"
PASSWORD = "farmhand-test-password"

# Plugins that phone home, browse the network or nag: none of them has a part in these tests.
_QUIET_PLUGINS = ["softwareupdate", "announcements", "tracking", "discovery", "achievements", "errortracking",
                  "pluginmanager", "backup", "firmware_check", "gcodeviewer", "health_check"]


def _config(port_basedir: Path) -> str:
    # JSON is YAML: no YAML writer needed here.
    config = {
        "server": {"firstRun": False, "onlineCheck": {"enabled": False},
                   "pluginBlacklist": {"enabled": False}},
        "serial": {"port": "VIRTUAL", "baudrate": 0, "autoconnect": False,
                   "timeout": {"communication": 3.0, "connection": 5.0, "temperatureAutoreport": 1.0},
                   "log": False},
        "plugins": {
            "_disabled": _QUIET_PLUGINS,
            "virtual_printer": {"enabled": True, "throttle": 0.002, "waitInterval": 0.5,
                                "simulateReset": False, "okAfterResend": True},
        },
        "printerProfiles": {"default": "_default"},
        "webcam": {"webcamEnabled": False, "timelapseEnabled": False},
    }
    return json.dumps(config, indent=1)


class OctoPrintPeer:
    """One OctoPrint server; ``api_key`` is an application key of the admin user ``farmhand``."""

    def __init__(self, basedir: Path) -> None:
        self.basedir = basedir
        self.port = free_port()
        self.api_key = secrets.token_hex(16).upper()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        if not OCTOPRINT.exists():
            pytest.skip("OctoPrint is not installed (make setup runs scripts/peers/octoprint.sh)")
        self.basedir.mkdir(parents=True, exist_ok=True)
        (self.basedir / "config.yaml").write_text(_config(self.basedir))
        subprocess.run([str(OCTOPRINT), "--basedir", str(self.basedir), "user", "add", USER,
                        "--password", PASSWORD, "--admin"], check=True, capture_output=True)
        keys = self.basedir / "data" / "appkeys" / "keys.yaml"
        keys.parent.mkdir(parents=True, exist_ok=True)
        keys.write_text(json.dumps({USER: [{"app_id": "farmhand-tests", "api_key": self.api_key}]}))

    def start(self) -> None:
        log = open(self.basedir / "serve.log", "ab")
        args = [str(OCTOPRINT), "serve", "--basedir", str(self.basedir), "--host", "127.0.0.1",
                "--port", str(self.port)]
        if os.geteuid() == 0:
            args.append("--iknowwhatimdoing")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 90
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.basedir / "serve.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"OctoPrint did not come up:\n{tail}")
            time.sleep(0.3)

    def answers(self) -> bool:
        request = urllib.request.Request(f"{self.url}/api/version", headers={"X-Api-Key": self.api_key})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError, http.client.HTTPException):
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
