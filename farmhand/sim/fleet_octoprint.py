"""OctoPrint printers for ``network_fleet``: one ``OctoPrintFarm`` serving simulated OctoPrints, a port each."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from .network_fleet import BedSensor, DeviceConfig, FleetKind
from .octoprint import OctoPrintFarm
from .octoprint_printer import SimOctoPrinter


@dataclass
class SensedOctoPrinter(SimOctoPrinter):
    """A simulated OctoPrint's printer whose bed thermistor reads what ``sensor(device_id)`` says, and whose
    prints take ``print_s`` whatever the file's length."""

    device_id: str = ""
    sensor: BedSensor | None = None
    print_s: float | None = None

    def temperatures(self) -> dict[str, Any]:
        sample = super().temperatures()
        if self.sensor is not None and "bed" in sample:
            sample["bed"] = {**sample["bed"], "actual": self.sensor(self.device_id)}
        return sample

    def start(self, name: str) -> None:
        file = self.files.get(name)
        if file is not None and self.print_s:
            self.seconds_per_line = self.print_s / max(1, file.lines)
        super().start(name)


class Fleet(FleetKind):
    kind = "octoprint"

    async def start(self, device_ids: list[str]) -> list[DeviceConfig]:
        self.farm = OctoPrintFarm()
        configs = []
        for device_id in device_ids:
            key = secrets.token_urlsafe(24)
            sim = await self.farm.add(key)
            # The same OctoPrint with the printer we read, before any client came.
            sim.printer = SensedOctoPrinter(device_id=device_id, sensor=self.bed_sensor, print_s=self.print_s)
            sim.printer.connect()
            configs.append({"id": device_id, "driver": "octoprint", "url": sim.url, "api_key": key,
                            "model": "Prusa MK3S"})
        return configs

    async def stop(self) -> None:
        await self.farm.close()
