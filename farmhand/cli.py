"""The `farmhand` command. Each subcommand imports only what it runs."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from agent import loop as agent_loop
from protocol import logs

EXAMPLES = {
    "hub": "example: farmhand hub --config /etc/farmhand/hub.toml",
    "agent": "example: farmhand agent --config /etc/farmhand/agent.toml",
    "demo": "example: farmhand demo --printers 3 --jobs 6 --exit-when-done",
    "print": "example: farmhand print /dev/ttyACM0 benchy.gcode --baud 115200 --profile prusa-mk3s",
    "sim printer": "example: farmhand sim printer --link /tmp/printer0 --speed 100 --noise 0.01",
    "protocol schema": "example: farmhand protocol schema > farmhand-v1.schema.json",
    "octoprint-key": "example: farmhand octoprint-key http://octopi.local --user pi",
    "protocol docs": "example: farmhand protocol docs --write protocol/README.md",
}


def _global_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--log-level", default=None,
                   help="debug, info, warning or error (default info; warning for the demo, whose progress lines matter)")
    p.add_argument("--log-json", action="store_true", default=None, help="log JSON lines (default when not a terminal)")
    return p


def _command(argv: list[str] | None) -> str | None:
    """The subcommand ``argv`` names, or None (none, only ``--help``, or a mistake the whole parser reports)."""
    pre = _global_options(argparse.ArgumentParser(prog="farmhand", add_help=False, exit_on_error=False))
    pre.add_argument("command", nargs="?")
    try:
        command: str | None = pre.parse_known_args(argv)[0].command
    except argparse.ArgumentError:
        return None
    return command


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every subcommand; given ``command``, only that one's own options, so that running one (an agent on a
    small machine) does not import the modules of the others (the demo, the simulators)."""
    p = _global_options(argparse.ArgumentParser(prog="farmhand",
                                                description="Orchestrator for 3D-print farms and render nodes."))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, helptext: str, parent: argparse._SubParsersAction = sub, group: str = "") -> argparse.ArgumentParser:
        return parent.add_parser(name, help=helptext, description=helptext,
                                 epilog=EXAMPLES.get(f"{group} {name}".strip()),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)

    hub = add("hub", "Run the hub: database, scheduler, HTTP API and MQTT ingest.")
    hub.add_argument("--config", type=Path, default=None, help="hub TOML file (env FARMHAND_HUB__… overrides)")

    agent = add("agent", "Run an agent that drives the devices in its config file.")
    agent.add_argument("--config", type=Path, required=True, help="agent TOML file (env FARMHAND_AGENT__… overrides)")

    def wanted(name: str) -> bool:
        return command in (None, name)

    demo = add("demo", "Run a small simulated farm: hub, broker, agents and virtual printers.")
    if wanted("demo"):
        from . import demo as demo_cmd

        demo_cmd.add_arguments(demo)
    print_ = add("print", "Stream a G-code file straight to a serial printer, without a hub.")
    if wanted("print"):
        from . import print_cmd

        print_cmd.add_arguments(print_)
    key = add("octoprint-key", "Get an application key for the agent from an OctoPrint.")
    if wanted("octoprint-key"):
        from . import octoprint_key

        octoprint_key.add_arguments(key)

    sim = add("sim", "Simulators for development and tests.")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, metavar="SIMULATOR")
    printer = add("printer", "Serve a virtual Marlin-like printer on a pseudo-terminal.", sim_sub, "sim")
    if wanted("sim"):
        from .sim import printer_cmd as sim_printer

        sim_printer.add_arguments(printer)

    from . import broker_cli

    broker_cli.add_arguments(add("broker", "Logins and access rules on the farm's Mosquitto (agents, scripts)."))
    from . import certs

    certs.add_arguments(add("certs", "A small CA for the farm: certificates for the broker and the hub."))

    proto = add("protocol", "The MQTT protocol's contract.")
    proto_sub = proto.add_subparsers(dest="protocol_command", required=True, metavar="WHAT")
    add("schema", "Print the JSON Schema of every message.", proto_sub, "protocol")
    docs = add("docs", "Print the topic table of protocol/README.md.", proto_sub, "protocol")
    docs.add_argument("--write", type=Path, metavar="README", help="update the generated section of this file in place")
    from . import ops_cli

    ops_cli.add_commands(sub, add)  # jobs, devices, token: operator actions over the HTTP API
    from . import export_cli  # export-backup

    export_cli.add_commands(add)  # export-backup: export schema|postgres, backup create|list|verify|restore
    return p


async def _run_hub(config: Path | None) -> int:
    from hub.app import Hub
    from hub.config import HubConfig
    from protocol.config import load

    from .service import database_problem, run_service

    hub = Hub(load(HubConfig, config, "FARMHAND_HUB"))

    async def health(budget_s: float) -> str | None:
        """The watchdog is fed while the hub's database takes a writer (the loop answering is a given here)."""
        if hub.store is None:
            return "the hub is not running"
        return await asyncio.to_thread(database_problem, hub.store.path, budget_s / 2)

    await run_service(hub.start, hub.stop, health)
    return 0


async def _run_agent(config: Path) -> int:
    from agent import footprint

    footprint.skip_pydantic_plugins()  # before agent.config builds the first validator
    from agent.config import AgentConfig
    from agent.node import Agent
    from protocol.config import load

    from .service import run_service

    agent = Agent(load(AgentConfig, config, "FARMHAND_AGENT"))
    await run_service(agent.start, agent.stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser(_command(argv)).parse_args(argv)
    logs.configure(args.log_level or ("warning" if args.command in ("demo", "print") else "info"), json=args.log_json)
    from protocol.config import ConfigError

    try:
        match args.command:
            case "jobs" | "devices" | "token" | "user":
                from . import ops_cli

                return ops_cli.run(args)
            case "export" | "backup":  # export-backup
                from . import export_cli

                return export_cli.run_export(args) if args.command == "export" else export_cli.run_backup(args)
            case "hub":
                return asyncio.run(_run_hub(args.config))
            case "agent":
                return agent_loop.run(_run_agent(args.config))
            case "demo":
                from . import demo

                return agent_loop.run(demo.run_from_args(args))
            case "print":
                from . import print_cmd

                return agent_loop.run(print_cmd.run_from_args(args))
            case "octoprint-key":
                from . import octoprint_key

                return asyncio.run(octoprint_key.run_from_args(args))
            case "sim":
                from .sim import printer_cmd as sim_printer

                return asyncio.run(sim_printer.run_from_args(args)) or 0
            case "broker":
                from . import broker_cli

                return broker_cli.run(args)
            case "certs":
                from . import certs

                return certs.run(args)
            case "protocol":
                if args.protocol_command == "schema":
                    from protocol.schema import dump

                    print(dump())
                else:
                    from protocol.docs import topics_markdown, update_readme

                    if args.write:
                        args.write.write_text(update_readme(args.write.read_text()))
                    else:
                        print(topics_markdown())
                return 0
    except ConfigError as exc:
        print(f"farmhand: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
