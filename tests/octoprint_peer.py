"""A real OctoPrint (from PyPI, installed by ``scripts/peers/octoprint.sh``) for the driver's tests.

Each test module gets its own basedir under tmp: a config with the bundled virtual
printer enabled and made fast, no first-run wizard, access control with one admin
user made on the command line, and an application key provisioned for that user
the way the Application Keys plugin stores its keys. Bound to 127.0.0.1 on a free port.
"""

from __future__ import annotations

import http.client
import asyncio
import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import free_port
from tests.prerequisites import peer

USER = "farmhand"
PASSWORD = "farmhand-test-password"

# Plugins that phone home, browse the network or nag: none of them has a part in these tests.
_QUIET_PLUGINS = ["softwareupdate", "announcements", "tracking", "discovery", "achievements", "errortracking",
                  "pluginmanager", "backup", "firmware_check", "gcodeviewer", "health_check"]


def gcode_job(lines: int) -> bytes:
    """A job of ``lines`` quick moves: the fast virtual printer takes roughly 2-5 ms a line."""
    body = ["G28", "G1 Z0.2 F3000"] + [f"G1 X{i % 100} Y{(i * 7) % 100} E{i * 0.01:.2f} F60000" for i in range(lines)]
    return ("\n".join(body) + "\n").encode()


def _config() -> str:
    # JSON is YAML: no YAML writer needed here.
    config = {
        "server": {"firstRun": False, "onlineCheck": {"enabled": False},
                   "pluginBlacklist": {"enabled": False}},
        "serial": {"port": "VIRTUAL", "baudrate": 0, "autoconnect": False,
                   # A printer gone silent (go_awol) is given up on after two 2-second timeouts.
                   "timeout": {"communication": 2.0, "connection": 5.0, "temperatureAutoreport": 1.0},
                   "maxCommunicationTimeouts": {"idle": 2, "printing": 2, "long": 2},
                   "log": False},
        "plugins": {
            "_disabled": _QUIET_PLUGINS,
            # Fast: a line every 2 ms, no reset chatter, no random line noise (tests trigger faults themselves).
            "virtual_printer": {"enabled": True, "throttle": 0.002, "waitInterval": 0.5,
                                "simulateReset": False, "simulated_errors": [], "resend_ratio": 0},
        },
        "printerProfiles": {"default": "_default"},
        "webcam": {"webcamEnabled": False, "timelapseEnabled": False},
    }
    return json.dumps(config, indent=1)


class OctoPrintApi:
    """An OctoPrint's REST API as the test's own user sees it: the real server's or the simulator's."""

    def __init__(self, port: int, api_key: str) -> None:
        self.port = port
        self.api_key = api_key

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """A REST call as the test's own OctoPrint user (with the provisioned key)."""
        async with aiohttp.ClientSession(headers={"X-Api-Key": self.api_key}) as http:
            async with http.request(method, f"{self.url}{path}", json=body) as response:
                text = await response.text()
                return response.status, (json.loads(text) if text.strip().startswith(("{", "[")) else text)

    async def state(self) -> str:
        _, connection = await self.call("GET", "/api/connection")
        return str(connection["current"]["state"])

    async def wait_state(self, states: tuple[str, ...], timeout: float = 10.0) -> None:
        """Until OctoPrint's connection state starts with one of ``states``."""
        for _ in range(int(timeout * 10)):
            if (await self.state()).startswith(states):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"OctoPrint never reached {states}")

    async def debug(self, command: str) -> None:
        """A virtual printer fault (``!!DEBUG:`` command), sent as OctoPrint sends any G-code."""
        status, _ = await self.call("POST", "/api/printer/command", {"commands": [f"!!DEBUG:{command}"]})
        assert status == 204, status

    async def printer_ready(self, timeout: float = 30.0) -> None:
        """OctoPrint connected to an idle virtual printer, as an operator leaves it after clearing an error."""
        deadline = time.monotonic() + timeout
        while (state := await self.state()) != "Operational":
            assert time.monotonic() < deadline, f"OctoPrint stays {state}"
            if state.startswith(("Printing", "Paused")):
                await self.call("POST", "/api/job", {"command": "cancel"})
            elif state.startswith(("Offline", "Closed", "Error")):
                await self.call("POST", "/api/connection", {"command": "connect", "port": "VIRTUAL"})
            await asyncio.sleep(0.5)

    async def prints_of(self, name: str) -> dict[str, Any]:
        """OctoPrint's own count of the prints of a stored file ({success, failure, last})."""
        status, info = await self.call("GET", f"/api/files/local/{name}")
        assert status == 200, (status, info)
        return info.get("prints") or {"success": 0, "failure": 0}


class OctoPrintPeer(OctoPrintApi):
    """One real OctoPrint server; ``api_key`` is an application key of the admin user ``farmhand``."""

    def __init__(self, basedir: Path) -> None:
        super().__init__(free_port(), secrets.token_hex(16).upper())
        self.basedir = basedir
        self.proc: subprocess.Popen[bytes] | None = None
        self.octoprint = ""

    def prepare(self) -> None:
        self.octoprint = str(peer("octoprint") / "bin" / "octoprint")
        self.basedir.mkdir(parents=True, exist_ok=True)
        (self.basedir / "config.yaml").write_text(_config())
        subprocess.run([self.octoprint, "--basedir", str(self.basedir), "user", "add", USER,
                        "--password", PASSWORD, "--admin"], check=True, capture_output=True)
        keys = self.basedir / "data" / "appkeys" / "keys.yaml"
        keys.parent.mkdir(parents=True, exist_ok=True)
        keys.write_text(json.dumps({USER: [{"app_id": "farmhand-tests", "api_key": self.api_key}]}))

    def start(self) -> None:
        log = open(self.basedir / "serve.log", "ab")
        args = [self.octoprint, "serve", "--basedir", str(self.basedir), "--host", "127.0.0.1",
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
