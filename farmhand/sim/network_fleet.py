"""Simulated networked printers of every kind at once, and the agent device configs that drive them.

The benchmark (``bench.network_printers``) starts hundreds, the demo
(``farmhand demo --network-printers``) one of each kind. Each kind's printers
come from its own simulator, many in one event loop: PrusaLink (``prusalink``),
Bambu LAN (``bambu``: one Mosquitto with a TLS listener per printer, an FTPS SD
card each), OctoPrint (``octoprint``) and Moonraker (``moonraker``, a Klippy
simulator behind a Moonraker-protocol simulator). A kind whose simulator is not
in this tree is refused by name when asked for.

``bed_sensor``, when given, is what each printer's bed thermistor reads:
``bed_sensor(device_id)`` is asked whenever the printer reports its bed
temperature (a poll answered, a push sent), so the benchmark can stamp what a
printer reports and time when the hub shows it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

KINDS = ("prusalink", "bambu", "octoprint", "moonraker")
BedSensor = Callable[[str], float]
DeviceConfig = dict[str, Any]
"""One ``[[devices]]`` table of the agent's config, as a dict."""


class FleetKind:
    """One kind's simulators: ``add`` printers, ``start`` them, their ``configs`` for the agent, ``stop``."""

    kind: str

    def __init__(self, workdir: Path, *, print_s: float, bed_sensor: BedSensor | None) -> None:
        self.workdir = workdir
        self.print_s = print_s
        self.bed_sensor = bed_sensor

    async def start(self, device_ids: list[str]) -> list[DeviceConfig]:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError


class NetworkFleet:
    """Printers of several kinds, each an id of its own; ``start`` returns the agent's device configs."""

    def __init__(self, workdir: Path, *, print_s: float = 10.0, bed_sensor: BedSensor | None = None) -> None:
        self.workdir = workdir
        self.print_s = print_s
        self.bed_sensor = bed_sensor
        self.kinds: dict[str, FleetKind] = {}

    async def start(self, counts: dict[str, int], prefix: str = "") -> list[DeviceConfig]:
        """``counts``: printers per kind, e.g. ``{"prusalink": 50, "bambu": 50}``; ids are ``{prefix}{kind}-{n}``."""
        configs: list[DeviceConfig] = []
        for kind, count in counts.items():
            if count <= 0:
                continue
            fleet = kind_class(kind)(self.workdir / kind, print_s=self.print_s, bed_sensor=self.bed_sensor)
            self.kinds[kind] = fleet
            configs += await fleet.start([f"{prefix}{kind}-{n}" for n in range(count)])
        return configs

    async def stop(self) -> None:
        for fleet in self.kinds.values():
            await fleet.stop()
        self.kinds.clear()


def kind_class(kind: str) -> type[FleetKind]:
    """The fleet class of ``kind`` (module ``farmhand.sim.fleet_<kind>``, class ``Fleet``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown network printer kind {kind!r}; known: {', '.join(KINDS)}")
    try:
        module = importlib.import_module(f"farmhand.sim.fleet_{kind}")
    except ModuleNotFoundError as exc:
        raise ValueError(f"no {kind} simulator in this tree ({exc.name} is missing)") from exc
    fleet: type[FleetKind] = module.Fleet
    return fleet


def available_kinds() -> list[str]:
    """The kinds whose simulator and driver this tree has."""
    found = []
    for kind in KINDS:
        try:
            kind_class(kind)
            importlib.import_module(f"agent.devices.{kind}")
        except (ValueError, ModuleNotFoundError):
            continue
        found.append(kind)
    return found


def parse_mix(text: str) -> dict[str, float]:
    """``"prusalink=1,bambu=1"`` → shares per kind (any positive weights); ``"all"`` → every available kind."""
    if text.strip() == "all":
        return dict.fromkeys(available_kinds(), 1.0)
    shares: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in KINDS:
            raise ValueError(f"unknown network printer kind {name!r} in the mix; known: {', '.join(KINDS)}")
        shares[name] = float(weight or 1)
        if shares[name] < 0:
            raise ValueError(f"a negative share for {name}")
    if not any(shares.values()):
        raise ValueError("the mix has no printers")
    return shares


def split(total: int, shares: dict[str, float]) -> dict[str, int]:
    """``total`` printers over the kinds by their shares (largest remainders), every count whole."""
    weight = sum(shares.values())
    exact = {k: total * w / weight for k, w in shares.items()}
    counts = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[:total - sum(counts.values())]:
        counts[k] += 1
    return counts
