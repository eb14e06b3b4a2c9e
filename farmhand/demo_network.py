"""`farmhand demo --network-printers`: one simulated printer of each networked kind, on an agent of their own.

Beside the demo's serial printers, the farm gains an OctoPrint, a Moonraker (Klipper), a PrusaLink and a
Bambu Lab printer in LAN mode — each a simulator speaking its printer's public API on loopback
(``farmhand.sim.network_fleet``), driven by the agent's real drivers — so a newcomer sees them in the panel
and the demo's jobs print on them too. ``DemoFarm`` starts them and their agent, and stops them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .sim.network_fleet import NetworkFleet, available_kinds

PRINT_S = 30.0
"""How long a job takes on a simulated network printer: long enough to watch it in the panel."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--network-printers", action="store_true",
                   help="add one simulated printer of each network kind (OctoPrint, Moonraker, PrusaLink, Bambu)")


async def start_fleet(data_dir: Path) -> tuple[NetworkFleet, list[dict[str, Any]]]:
    """One printer of each network kind this tree has: the running simulators and the agent's device configs."""
    fleet = NetworkFleet(data_dir / "network-printers", print_s=PRINT_S)
    kinds = available_kinds()
    try:
        devices = await fleet.start(dict.fromkeys(kinds, 1), prefix="net-")
    except BaseException:
        await fleet.stop()
        raise
    print(f"farmhand demo: network printers {', '.join(d['id'] for d in devices)} (simulated {', '.join(kinds)})",
          flush=True)
    return fleet, devices
