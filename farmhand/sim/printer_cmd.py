"""`farmhand sim printer`: one virtual printer on a pty until stopped, optionally recording what it ran."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.serial.profiles import ProfileError

from .printer import VirtualPrinter


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--link", type=Path, required=True, help="path of the symlink to the printer's pty, e.g. /tmp/printer0")
    p.add_argument("--profile", default="marlin2", help="firmware dialect to speak (a firmware profile; default marlin2)")
    p.add_argument("--baud", type=int, default=250000,
                   help="pace both directions like a UART at this speed, 10 bits a byte (default 250000; 0: no pacing)")
    p.add_argument("--speed", type=float, default=100.0, help="run moves and heating this many times faster than real")
    p.add_argument("--noise", type=float, default=0.0, help="probability a received line gets one corrupted byte")
    p.add_argument("--seed", type=int, default=None, help="random seed for the noise, for repeatable runs")
    p.add_argument("--rx-buffer", type=int, default=None, help="receive buffer in bytes (default: the profile's)")
    p.add_argument("--bufsize", type=int, default=None, help="command queue length (default: the profile's)")
    p.add_argument("--advanced-ok", action=argparse.BooleanOptionalAction, default=None,
                   help="answer 'ok N<line> P<planner> B<queue>' (default: the profile's)")
    p.add_argument("--name", default="Farmhand Virtual Printer", help="MACHINE_TYPE reported by M115")
    p.add_argument("--sd", type=Path, action="append", default=[], metavar="FILE",
                   help="put FILE on the printer's SD card (repeatable)")
    p.add_argument("--record", type=Path, default=None, metavar="PATH",
                   help="on exit, write the stats and every command the firmware accepted to PATH")


async def run_from_args(args: argparse.Namespace) -> int:
    from farmhand.service import run_service

    try:
        sd_files = {path.name.upper(): path.read_bytes() for path in args.sd}
        printer = VirtualPrinter(args.link, profile=args.profile, speed_factor=args.speed, noise=args.noise,
                                 seed=args.seed, baud=args.baud or None, rx_buffer=args.rx_buffer,
                                 bufsize=args.bufsize, advanced_ok=args.advanced_ok, name=args.name,
                                 sd_files=sd_files)
    except (ValueError, OSError, ProfileError) as exc:
        raise SystemExit(f"farmhand sim printer: {exc}") from None

    async def start() -> None:
        await printer.start()
        print(f"farmhand sim printer: serving on {printer.link} (-> {printer.tty}); Ctrl-C stops", flush=True)

    async def stop() -> None:
        await printer.stop()
        if args.record is not None:
            printer.record(args.record)

    await run_service(start, stop)
    return 0
