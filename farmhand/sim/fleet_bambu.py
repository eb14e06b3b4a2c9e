"""Bambu LAN printers for ``network_fleet``: one Mosquitto with a TLS listener per printer, an FTPS SD card each."""

from __future__ import annotations

from typing import Any

from .bambu import DEFAULT_ACCESS_CODE, BambuLan
from .bambu_printer import SimulatedBambuPrinter
from .network_fleet import BedSensor, DeviceConfig, FleetKind


class SensedBambuPrinter(SimulatedBambuPrinter):
    """A simulated Bambu printer whose bed thermistor reads what ``sensor(device_id)`` says, at every report."""

    def __init__(self, *args: Any, device_id: str, sensor: BedSensor | None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.device_id = device_id
        self.sensor = sensor

    def _advance(self, dt: float, now: float) -> None:
        super()._advance(dt, now)
        if self.sensor is not None:
            self.status["bed_temper"] = self.sensor(self.device_id)


class Fleet(FleetKind):
    kind = "bambu"

    async def start(self, device_ids: list[str]) -> list[DeviceConfig]:
        serials = {f"01P00A{n:09d}": device_id for n, device_id in enumerate(device_ids)}
        self.lan = BambuLan(self.workdir)
        for serial, device_id in serials.items():
            options: dict[str, Any] = {"print_s": self.print_s, "report_interval_s": 1.0}
            plain = self.lan.add(serial, **options)
            # The same printer with the thermistor we read; the plain one was never started.
            self.lan.printers[serial] = SensedBambuPrinter(serial, self.lan.broker.internal_url, plain.sdcard,
                                                           device_id=device_id, sensor=self.bed_sensor, **options)
        await self.lan.start()
        return [{"id": device_id, "driver": "bambu", "url": self.lan.url(serial), "serial": serial,
                 "access_code": DEFAULT_ACCESS_CODE, "ca_file": str(self.lan.certificate(serial)), "model": "P1S"}
                for serial, device_id in serials.items()]

    async def stop(self) -> None:
        await self.lan.stop()
