"""PrusaLink printers for ``network_fleet``: one ``PrusaLinkSim`` app serving them all, a port each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .network_fleet import BedSensor, DeviceConfig, FleetKind
from .prusalink import PrusaLinkSim
from .prusalink_printer import SimPrinter


@dataclass
class SensedPrinter(SimPrinter):
    """A simulated PrusaLink printer whose bed thermistor reads what ``sensor(device_id)`` says."""

    device_id: str = ""
    sensor: BedSensor | None = None

    def status(self) -> dict[str, Any]:
        status = super().status()
        if self.sensor is not None:
            status["printer"]["temp_bed"] = self.sensor(self.device_id)
        return status


class Fleet(FleetKind):
    kind = "prusalink"

    async def start(self, device_ids: list[str]) -> list[DeviceConfig]:
        self.sim = PrusaLinkSim()
        configs = []
        for n, device_id in enumerate(device_ids):
            printer = SensedPrinter(name=device_id, serial=f"SIM{n:014d}", print_s=self.print_s,
                                    device_id=device_id, sensor=self.bed_sensor)
            url = await self.sim.add(printer)
            configs.append({"id": device_id, "driver": "prusalink", "url": url, "username": printer.username,
                            "password": printer.password, "model": "MK4"})
        return configs

    async def stop(self) -> None:
        await self.sim.close()
