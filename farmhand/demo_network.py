"""`farmhand demo --network-printers`: one simulated printer of each networked kind, on an agent of their own.

Beside the demo's serial printers, the farm gains an OctoPrint, a Moonraker (Klipper), a PrusaLink and a
Bambu Lab printer in LAN mode — each a simulator speaking its printer's public API on loopback
(``farmhand.sim.network_fleet``), driven by the agent's real drivers — so a newcomer sees them in the panel
and the demo's jobs print on them too.
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


class NetworkPrinters:
    """The simulated printers and their agent; ``stop`` ends both (the demo stops it with its agents)."""

    def __init__(self, fleet: NetworkFleet, agent: Any) -> None:
        self.fleet = fleet
        self.agent = agent

    async def stop(self) -> None:
        try:
            await self.agent.stop()
        finally:
            await self.fleet.stop()


async def start(farm: Any) -> NetworkPrinters:
    """One printer of each network kind this tree has, on a new agent of the demo ``farm`` (a started DemoFarm)."""
    from agent.config import AgentConfig
    from agent.node import Agent

    data_dir: Path = farm.data_dir
    fleet = NetworkFleet(data_dir / "network-printers", print_s=PRINT_S)
    kinds = available_kinds()
    try:
        devices = await fleet.start(dict.fromkeys(kinds, 1), prefix="net-")
        run_id = data_dir.name[-6:].replace("_", "x")
        agent = Agent(AgentConfig.model_validate({
            "node_id": f"demo-{run_id}-network",
            "mqtt": {"url": farm.hub.mqtt_url},
            "storage": {"dir": data_dir / "agent-network"},
            "hub": {"token": farm.agent_token},
            "telemetry_interval_s": 1.0,
            "devices": devices,
        }))
        await agent.start()
    except BaseException:
        await fleet.stop()
        raise
    print(f"farmhand demo: network printers {', '.join(d['id'] for d in devices)} (simulated {', '.join(kinds)})",
          flush=True)
    return NetworkPrinters(fleet, agent)
