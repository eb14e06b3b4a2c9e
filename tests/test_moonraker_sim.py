"""The Moonraker simulator (``farmhand.sim.moonraker``) driven by the real Moonraker driver.

The driver's own tests run against the real Moonraker; these show that the simulator the benchmark and the
demo use in its place gives the driver what Moonraker gives it: a whole print with pause and resume,
cancel, an emergency stop in Klipper's words and the firmware restart after it, a refused key; and the
driver's https link (nginx in front of Moonraker) checked against the device's CA file.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.devices.base import CommandRejected
from agent.devices.moonraker import MoonrakerPrinter
from farmhand.certs import issue, make_ca
from farmhand.sim.moonraker import MoonrakerFarm, SimMoonraker
from protocol.messages import DeviceState

from .farm import wait_for
from .test_network_printer import Recorder

pytestmark = pytest.mark.integration

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[SimMoonraker]:
    farm = MoonrakerFarm()
    sim = await farm.add(SimMoonraker(tmp_path / "gcodes", api_key=KEY, lines_per_s=400.0))
    try:
        yield sim
    finally:
        await farm.close()


async def opened(host: SimMoonraker, rec: Recorder, key: str | None = KEY) -> MoonrakerPrinter:
    printer = MoonrakerPrinter("voron", rec, url=host.url, api_key=key, poll_interval_s=0.2)
    await printer.open()
    await wait_for(lambda: printer.connected and printer.status().state is DeviceState.IDLE, 10, "connected")
    return printer


async def printing(host: SimMoonraker, rec: Recorder, tmp_path: Path, job_id: str) -> MoonrakerPrinter:
    """A driver with a long job printing."""
    printer = await opened(host, rec)
    await printer.start_job(job_id, gcode_file(tmp_path, 20000))
    await wait_for(lambda: printer.status().state is DeviceState.PRINTING, 10, "printing")
    return printer


def gcode_file(tmp_path: Path, moves: int) -> Path:
    path = tmp_path / f"job-{moves}.gcode"
    path.write_text("M140 S60\nM104 S210\n" + "G1 X10 Y10 E0.1\n" * moves + "M104 S0\n")
    return path


async def test_a_whole_print_with_pause_and_resume(host: SimMoonraker, tmp_path: Path) -> None:
    rec = Recorder()
    printer = await opened(host, rec)
    try:
        assert printer.info().firmware and printer.info().firmware.startswith("Klipper")
        await printer.start_job("p1", gcode_file(tmp_path, 1200))
        assert (host.gcodes / "farmhand-job-p1.gcode").exists(), "uploaded, its sha256 checked by the simulator"
        await wait_for(lambda: "job_progress" in rec.types(), 10, "progress")
        await printer.pause()
        await wait_for(lambda: "job_paused" in rec.types(), 5, "paused")
        assert host.printer.stats.state == "paused"
        await printer.resume()
        await wait_for(lambda: "job_completed" in rec.types(), 15, "completed")
        assert [t for t in rec.types() if t != "job_progress"] == \
            ["job_started", "job_paused", "job_resumed", "job_completed"]
        assert host.printer.started_files == ["farmhand-job-p1.gcode"], "started once"
    finally:
        await printer.close()


async def test_cancel_ends_the_job(host: SimMoonraker, tmp_path: Path) -> None:
    rec = Recorder()
    printer = await printing(host, rec, tmp_path, "c1")
    try:
        await printer.cancel()
        await wait_for(lambda: "job_failed" in rec.types(), 10, "the job to end")
        assert rec.events[-1].cancelled is True  # type: ignore[union-attr]
        assert host.printer.stats.state == "cancelled"
    finally:
        await printer.close()


async def test_emergency_stop_in_klippers_words_and_a_firmware_restart(host: SimMoonraker, tmp_path: Path) -> None:
    rec = Recorder()
    printer = await printing(host, rec, tmp_path, "e1")
    try:
        await printer.emergency_stop()
        await wait_for(lambda: "job_failed" in rec.types(), 10, "the job to fail")
        assert rec.events[-1].reason.startswith("Shutdown due to webhooks request")  # type: ignore[union-attr]
        assert printer.status().state is DeviceState.ERROR
        await printer.firmware_restart()
        await wait_for(lambda: printer.status().state is DeviceState.IDLE, 15, "ready after FIRMWARE_RESTART")
    finally:
        await printer.close()


async def test_a_wrong_key_is_one_clear_error(host: SimMoonraker) -> None:
    rec = Recorder()
    printer = MoonrakerPrinter("voron", rec, url=host.url, api_key="f" * 32, poll_interval_s=0.2)
    await printer.open()
    try:
        await wait_for(lambda: printer.status().state is DeviceState.ERROR, 10, "the login error")
        # The simulator refuses a wrong X-Api-Key at the websocket's handshake, in Moonraker's JSON error.
        assert "login refused: Moonraker answered 401: Unauthorized" in (printer.status().error or "")
        await asyncio.sleep(1.0)
        assert [s.state for s in rec.statuses].count(DeviceState.ERROR) == 1
    finally:
        await printer.close()


@contextlib.asynccontextmanager
async def tls_front(host: SimMoonraker, tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """An https front for ``host`` (as nginx in front of Moonraker) with a certificate of a CA of its own;
    yields its URL and the CA's certificate."""
    ca = make_ca(tmp_path / "ca")
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(*issue(tmp_path / "ca", "moonraker", ["127.0.0.1"]))
    port = int(host.url.rsplit(":", 1)[1])

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    front = await asyncio.start_server(forward, "127.0.0.1", 0, ssl=served)
    try:
        yield f"https://127.0.0.1:{front.sockets[0].getsockname()[1]}", ca
    finally:
        front.close()


async def test_an_https_moonraker_is_checked_against_the_ca_file(host: SimMoonraker, tmp_path: Path) -> None:
    async with tls_front(host, tmp_path) as (url, ca):
        rec = Recorder()
        printer = MoonrakerPrinter("voron", rec, url=url, api_key=KEY, ca_file=ca, poll_interval_s=0.2)
        stranger = MoonrakerPrinter("other", Recorder(), url=url, api_key=KEY, poll_interval_s=0.2)
        await printer.open()
        await stranger.open()
        try:
            await wait_for(lambda: printer.connected and printer.status().state is DeviceState.IDLE, 10, "connected")
            await printer.start_job("t1", gcode_file(tmp_path, 200))  # the upload goes over https too
            await wait_for(lambda: "job_completed" in rec.types(), 15, "completed")
            assert host.printer.started_files == ["farmhand-job-t1.gcode"]
            # Without the CA file the front's certificate is not trusted: no link, and the reason said.
            with pytest.raises(CommandRejected, match="not connected: .*CERTIFICATE_VERIFY_FAILED"):
                await stranger.pause()
            assert stranger.status().state is DeviceState.DISCONNECTED
        finally:
            await stranger.close()
            await printer.close()
