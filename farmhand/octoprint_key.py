"""``farmhand octoprint-key``: get an application key for the agent from an OctoPrint.

Runs OctoPrint's Application Keys flow: the request appears in OctoPrint's interface
(and at the address printed), a person approves it, and the key is printed for the
agent's config (``api_key`` of the device).
"""

from __future__ import annotations

import argparse
import sys

from agent.devices.octoprint.appkeys import APP_NAME, AppKeyRefused, request_app_key
from agent.net import RequestFailed


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="OctoPrint's address, e.g. http://octopi.local or http://10.0.0.5:5000")
    p.add_argument("--user", default=None, help="the OctoPrint user the key acts as (default: whoever approves)")
    p.add_argument("--app", default=APP_NAME, help=f"the name OctoPrint shows for the key (default {APP_NAME!r})")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the approval (default 600)")


async def run_from_args(args: argparse.Namespace) -> int:
    def prompt(address: str) -> None:
        print(f"Approve the request for {args.app!r} in OctoPrint, or at {address}", file=sys.stderr, flush=True)

    try:
        key = await request_app_key(args.url, app=args.app, user=args.user, prompt=prompt, timeout_s=args.timeout)
    except AppKeyRefused as exc:
        print(f"farmhand: {exc}", file=sys.stderr)
        return 1
    except (OSError, RequestFailed) as exc:  # TimeoutError is an OSError
        print(f"farmhand: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    print(key)
    return 0
