"""Simulated Bambu Lab printers in LAN mode, as many as wanted, in one process on one broker.

Each printer has what the real one exposes to a driver: MQTT over TLS on a
port of its own (a listener of one shared Mosquitto, with the printer's
self-signed certificate, CN = serial, and the ``bblp`` login), and its SD card
over implicit FTPS (``bambu_ftps``). ``url(serial)`` and ``certificate(serial)``
give what goes into the agent's device config.

    lan = BambuLan(workdir)
    lan.add("01S00A000000001", print_s=30)
    await lan.start()
    ...  # driver config: url = lan.url(serial), ca_file = lan.certificate(serial)
    await lan.stop()
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

from .bambu_broker import BambuBroker, PrinterListener
from .bambu_ftps import SdCardServer
from .bambu_printer import SimulatedBambuPrinter

DEFAULT_ACCESS_CODE = "12345678"


class BambuLan:
    """Printers are added before ``start``; the broker can be stopped and started again to cut every link."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.broker = BambuBroker(workdir / "broker")
        self.printers: dict[str, SimulatedBambuPrinter] = {}
        self._listeners: dict[str, PrinterListener] = {}
        self._ftps: dict[str, SdCardServer] = {}

    def add(self, serial: str, access_code: str = DEFAULT_ACCESS_CODE, **printer: Any) -> SimulatedBambuPrinter:
        """``printer``: SimulatedBambuPrinter's options (full_reports, report_interval_s, print_s…)."""
        self._listeners[serial] = self.broker.add_printer(serial, access_code)
        sdcard = self.workdir / "sdcard" / serial
        sdcard.mkdir(parents=True, exist_ok=True)
        sim = SimulatedBambuPrinter(serial, self.broker.internal_url, sdcard, **printer)
        self.printers[serial] = sim
        return sim

    def url(self, serial: str) -> str:
        """The printer's address for the driver's config (after ``start``: the SD card's port is known then)."""
        return f"mqtts://127.0.0.1:{self._listeners[serial].port}?ftps_port={self._ftps[serial].port}"

    def certificate(self, serial: str) -> Path:
        return self._listeners[serial].cert

    def ftps(self, serial: str) -> SdCardServer:
        return self._ftps[serial]

    async def start(self) -> None:
        await asyncio.to_thread(self.broker.start)
        for serial, listener in self._listeners.items():
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(listener.cert, listener.key)
            server = SdCardServer(self.printers[serial].sdcard, listener.access_code, context)
            await server.listen("127.0.0.1")  # after the broker took its ports, so no port is taken twice
            self._ftps[serial] = server
        await asyncio.gather(*(p.start() for p in self.printers.values()))

    async def stop_broker(self) -> None:
        """Every printer's network goes away (the printers print on)."""
        await asyncio.to_thread(self.broker.stop)

    async def start_broker(self) -> None:
        await asyncio.to_thread(self.broker.start)

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.printers.values()), return_exceptions=True)
        for server in self._ftps.values():
            await server.close()
        self._ftps.clear()
        await asyncio.to_thread(self.broker.stop)
