"""The Moonraker driver, the real Moonraker and the real Klippy: a whole print with nothing simulated but the MCU.

Klippy runs without a printer (``tests/klippykit.py``) with
its own test config plus a ``[virtual_sdcard]`` on Moonraker's gcodes folder, so
``SDCARD_PRINT_FILE`` reads the file the driver uploaded. The file moves only the
extruder (the config has no axes) and heats nothing (no board reports a
temperature). Without a board Klippy does not wait for moves, so a print is over
as soon as it is read: pause and resume are shown against the simulator
(``test_moonraker.py``); here the upload, the start, the end, an emergency stop in
Klippy's own words and FIRMWARE_RESTART.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from farmhand.sim.moonraker_host import MoonrakerHost, installed
from protocol.messages import DeviceState

from . import klippykit
from .farm import wait_for
from .prerequisites import missing_reason
from .test_moonraker import opened
from .test_network_printer import Recorder

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not installed(), reason=missing_reason(
        "peer moonraker is not installed under .peers/ (scripts/peers/moonraker.sh)")),
    pytest.mark.skipif(not klippykit.available(), reason=missing_reason(
        "peer klippy is not installed under .peers/ (scripts/peers/klippy.sh)")),
]


async def test_a_whole_print_on_real_klippy_behind_real_moonraker(tmp_path: Path) -> None:
    from agent.devices.moonraker import MoonrakerPrinter

    data = tmp_path / "printer_data"
    config = tmp_path / "printer.cfg"
    host = MoonrakerHost(data)
    config.write_text(klippykit.CONFIG.read_text() + f"\n[virtual_sdcard]\npath: {host.gcodes}\n")
    job = tmp_path / "job.gcode"
    job.write_text("M83\n" + "G1 E0.5 F600\n" * 150 + "M117 done\n")  # 150 moves of 50 ms
    with klippykit.running_klippy(tmp_path / "klippy", config) as klippy:
        host = MoonrakerHost(data, klippy_socket=klippy.api_socket)
        await host.start()
        rec = Recorder()
        printer: MoonrakerPrinter | None = None
        try:
            await host.wait_klippy()
            printer = await opened(MoonrakerPrinter("klipper", rec, url=host.url, api_key=host.api_key,
                                                    poll_interval_s=0.2))
            assert printer.info().firmware and printer.info().firmware.startswith("Klipper")
            await printer.start_job("k1", job)
            # Klippy without a board does not wait for moves: the print ends as soon as it is read.
            await wait_for(lambda: "job_completed" in rec.types(), 60, "the job to complete")
            assert [t for t in rec.types() if t.startswith("job_")] in (
                ["job_started", "job_completed"], ["job_started", "job_progress", "job_completed"])
            stats = klippy.query({"print_stats": ["state", "filename"]})["print_stats"]
            assert stats == {"state": "complete", "filename": "farmhand-job-k1.gcode"}
            position = klippy.query({"toolhead": ["position"]})["toolhead"]["position"]
            assert position[3] == pytest.approx(75.0), "every extruder move ran once: 150 × 0.5 mm"

            await printer.emergency_stop()
            await wait_for(lambda: printer.status().state is DeviceState.ERROR, 10, "Klippy's shutdown")
            assert (printer.status().error or "").startswith("Shutdown due to webhooks request")
            await printer.firmware_restart()
            await wait_for(lambda: printer.status().state is DeviceState.IDLE, 30, "ready after FIRMWARE_RESTART")
        finally:
            if printer is not None:
                await printer.close()
            await host.stop()
