"""`farmhand demo --network-printers`: a newcomer sees one printer of each network kind online in the hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from farmhand.sim.network_fleet import KINDS

from .farm import demo_api_hint
from .prerequisites import program

pytestmark = pytest.mark.integration
WORKING = {"idle", "printing", "paused"}


def devices(url: str, token: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        items: list[dict[str, Any]] = json.load(response)["items"]
        return items


def test_the_demo_shows_a_printer_of_each_network_kind_online(tmp_path: Path) -> None:
    program("mosquitto")  # the Bambu printers' own broker
    program("openssl")  # their certificates
    proc = subprocess.Popen(
        [sys.executable, "-m", "farmhand.cli", "demo", "--network-printers", "--printers", "1", "--no-render",
         "--http-port", "0", "--data-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "FARMHAND_LOG_JSON": "1"})
    try:
        token, jobs_url = demo_api_hint(proc)
        url = jobs_url.removesuffix("/jobs") + "/devices"
        deadline = time.monotonic() + 60
        while True:
            # Online and working: the demo keeps its queue full, so a printer may be printing already.
            ready = {d["kind"] for d in devices(url, token) if d["online"] and d["state"] in WORKING}
            if {*KINDS, "serial_gcode"} <= ready:  # the demo's own printers are still there too
                break
            assert time.monotonic() < deadline, f"online after 60 s: {sorted(ready)}; wanted {KINDS} and serial_gcode"
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode in (0, 130, -15), proc.returncode
