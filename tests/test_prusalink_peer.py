"""The PrusaLink driver against Prusa's own PrusaLink (PyPI ``prusalink``, from scripts/peers/prusalink.sh).

PrusaLink runs here without a printer, so it proves what needs no firmware: the
login — digest with qop=auth, MD5-sess and an opaque, or X-Api-Key — and the
version/status handshake. With no printer on its serial port it reports ERROR
"Serial device does not exist", which the driver must show in those words.
Printing needs the printer's firmware; the job lifecycle is tested against the
simulator (test_prusalink.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.devices.network import Backoff
from agent.devices.prusalink import PrusaLinkPrinter
from protocol.messages import DeviceState

from .conftest import free_port
from .test_network_printer import Recorder
from .test_prusalink import PASSWORD, REPO, until

pytestmark = pytest.mark.integration

PRUSALINK = REPO / ".peers" / "prusalink" / "bin" / "prusalink"


class RealPrusaLink:
    """Prusa's PrusaLink daemon in the foreground, with no printer on its serial port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log = workdir / "prusalink.log"
        digest = hashlib.md5(f"maker:Administrator:{PASSWORD}".encode()).hexdigest()  # noqa: S324
        (workdir / "prusa_printer_settings.ini").write_text(
            f"[printer]\ntype = MK3S\nname = farmhand-test\n\n[service::local]\nenable = 1\n"
            f"username = maker\ndigest = {digest}\napi_key = the-api-key\n")
        self.config = workdir / "prusalink.ini"
        self.config.write_text(
            f"[daemon]\ndata_dir = {workdir}\npid_file = prusalink.pid\n\n"
            f"[http]\naddress = 127.0.0.1\nport = {self.port}\n\n"
            f"[printer]\nport = {workdir}/no-printer-here\nsettings = prusa_printer_settings.ini\n"
            f"directory = gcodes\n\n[cameras]\nauto_detect = False\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([str(PRUSALINK), "-f", "-d", "-c", str(self.config)], stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"prusalink exited: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "prusalink did not listen"
            if self._ready():
                return
            time.sleep(0.1)

    def _ready(self) -> bool:
        """PrusaLink listens before its adapter is up, answering 503 meanwhile; ready is the login's 401."""
        try:
            urllib.request.urlopen(f"{self.url}/api/version", timeout=2)  # noqa: S310 - loopback
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        except OSError:
            return False
        return True

    def refusals(self) -> int:
        """Requests PrusaLink answered 401 or 403, by its own access log."""
        # With -d every request is logged as it happens; "Was[…]" lines are PrusaLink replaying its recent
        # log when something interesting happens (the printer's ERROR state), not new requests.
        lines = self.log.read_text(errors="replace").splitlines()
        return sum(1 for line in lines if "Was[" not in line and re.search(r'" 40[13] \d', line))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@pytest.fixture(scope="module")
def prusalink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealPrusaLink]:
    if not PRUSALINK.exists():
        pytest.skip("PrusaLink is not installed: run scripts/peers/prusalink.sh (make setup)")
    server = RealPrusaLink(tmp_path_factory.mktemp("prusalink"))
    server.start()
    yield server
    server.stop()


async def test_real_prusalink_digest_handshake_and_its_own_error_words(prusalink: RealPrusaLink) -> None:
    device = PrusaLinkPrinter("mk3", Recorder(), url=prusalink.url, username="maker", password=PASSWORD,
                              poll_interval_s=0.2)
    before = prusalink.refusals()
    await device.open()
    try:
        await until(lambda: device.connected, what="the login")
        await asyncio.sleep(0.6)  # a few polls on the kept nonce
        assert device.info().firmware == "PrusaLink 0.8.1"
        status = device.status()
        assert status.state is DeviceState.ERROR and status.error == "Serial device does not exist"
        assert prusalink.refusals() - before == 1, "only the session's first request is challenged"
    finally:
        await device.close()


@pytest.mark.parametrize("login", [{"username": "maker", "password": "wrong"}, {"api_key": "wrong-key"}])
async def test_real_prusalink_refuses_a_wrong_login_once(prusalink: RealPrusaLink, login: dict) -> None:
    device = PrusaLinkPrinter("mk3", Recorder(), url=prusalink.url, poll_interval_s=0.05,
                              backoff=Backoff(first_s=0.01, max_s=30.0), **login)
    before = prusalink.refusals()
    await device.open()
    try:
        await until(lambda: device.status().state is DeviceState.ERROR, what="the login error")
        await asyncio.sleep(1.0)
        assert "login refused" in (device.status().error or "")
        # Digest: the session's challenge and the one refusal; API key: the refusal alone.
        assert prusalink.refusals() - before == (2 if "password" in login else 1)
    finally:
        await device.close()


async def test_real_prusalink_takes_the_api_key(prusalink: RealPrusaLink) -> None:
    device = PrusaLinkPrinter("mk3", Recorder(), url=prusalink.url, api_key="the-api-key", poll_interval_s=0.2)
    await device.open()
    try:
        await until(lambda: device.connected, what="the login")
        assert device.status().error == "Serial device does not exist"
    finally:
        await device.close()
