"""Moonraker printers for ``network_fleet``: one ``MoonrakerFarm`` serving simulated Klippers, a port each."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from .moonraker import MoonrakerFarm, SimMoonraker
from .network_fleet import BedSensor, DeviceConfig, FleetKind


class SensedMoonraker(SimMoonraker):
    """A simulated Moonraker whose Klipper's bed thermistor reads what ``sensor(device_id)`` says."""

    def __init__(self, gcodes: Path, *, device_id: str, sensor: BedSensor | None, **kw: Any) -> None:
        super().__init__(gcodes, **kw)
        self.device_id = device_id
        self.sensor = sensor

    def status_of(self, name: str, now: float, fields: list[str] | None = None) -> dict[str, Any] | None:
        status = super().status_of(name, now, fields)
        if name == "heater_bed" and status is not None and self.sensor is not None \
                and (fields is None or "temperature" in fields):
            status = {**status, "temperature": self.sensor(self.device_id)}
        return status


class Fleet(FleetKind):
    kind = "moonraker"

    async def start(self, device_ids: list[str]) -> list[DeviceConfig]:
        self.farm = MoonrakerFarm()
        configs = []
        for device_id in device_ids:
            key = secrets.token_hex(16)
            host = await self.farm.add(SensedMoonraker(self.workdir / device_id / "gcodes", api_key=key,
                                                       print_s=self.print_s, device_id=device_id,
                                                       sensor=self.bed_sensor))
            configs.append({"id": device_id, "driver": "moonraker", "url": host.url, "api_key": key,
                            "model": "Voron 2.4"})
        return configs

    async def stop(self) -> None:
        await self.farm.close()
