"""Operator commands of the `farmhand` CLI: jobs, devices and tokens, over the hub's HTTP API.

The hub and token come from --hub/--token or FARMHAND_URL/FARMHAND_TOKEN.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

COMMANDS = ("jobs", "devices", "token")

EXAMPLES = {
    "jobs submit": "example: farmhand jobs submit benchy.gcode --copies 4 --wait",
    "jobs list": "example: farmhand jobs list --state printing",
    "jobs cancel": "example: farmhand jobs cancel 42",
    "devices": "example: farmhand devices --json",
    "token create": "example: farmhand token create --name ci --role operator",
    "user list": "example: farmhand user list",
    "user disable": "example: farmhand user disable olga   # her sessions end at once",
}

Add = Callable[..., argparse.ArgumentParser]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hub", default=os.environ.get("FARMHAND_URL", "http://127.0.0.1:8080"),
                   help="hub URL (env FARMHAND_URL; default http://127.0.0.1:8080)")
    p.add_argument("--token", default=os.environ.get("FARMHAND_TOKEN"),
                   help="API token (env FARMHAND_TOKEN; create one with `farmhand token create`)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_commands(sub: argparse._SubParsersAction, add: Add) -> None:
    def cmd(name: str, helptext: str, parent: argparse._SubParsersAction, group: str) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=helptext, description=helptext, epilog=EXAMPLES.get(f"{group} {name}"),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(p)
        return p

    jobs = add("jobs", "Submit, list and cancel print jobs.")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    submit = cmd("submit", "Upload a file and queue it, optionally waiting for the prints to finish.", jobs_sub, "jobs")
    submit.add_argument("file", help="G-code (or other file the hub accepts)")
    submit.add_argument("--copies", type=int, default=1, help="how many jobs to queue (default 1)")
    submit.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    submit.add_argument("--device", default=None, help="pin to one device, as node/device")
    submit.add_argument("--name", default=None, help="job name (default: the file's name)")
    submit.add_argument("--wait", action="store_true", help="wait until every copy completed, failed or was cancelled")
    submit.add_argument("--timeout", type=float, default=None, help="with --wait, give up after this many seconds")
    listing = cmd("list", "List jobs, newest last.", jobs_sub, "jobs")
    listing.add_argument("--state", default=None, help="only jobs in this state (queued, printing, completed, ...)")
    cancel = cmd("cancel", "Cancel a job (a running print is stopped by its device).", jobs_sub, "jobs")
    cancel.add_argument("id", type=int)

    devices = add("devices", "List printers and render devices with their state.")
    _common(devices)

    token = add("token", "Manage API tokens (admin).")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = cmd("create", "Create an API token; it is printed once and never shown again.", token_sub, "token")
    create.add_argument("--name", required=True, help="what the token is for, e.g. 'ci' or 'node-7'")
    create.add_argument("--role", required=True, choices=["admin", "operator", "viewer", "agent"])

    user = add("user", "Manage panel users (admin): a departed operator is disabled or deleted.")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    cmd("list", "List users.", user_sub, "user")
    for action, helptext in (("disable", "Disable a user: no login, and their sessions end at once."),
                             ("enable", "Let a disabled user log in again."),
                             ("logout", "End a user's sessions everywhere."),
                             ("delete", "Delete a user and end their sessions.")):
        cmd(action, helptext, user_sub, "user").add_argument("name", help="the user name")


# --------------------------------------------------------------------------- output


class Bar:
    """A one-line progress bar on stderr (only when it is a terminal, unless forced)."""

    def __init__(self, label: str, out: TextIO = sys.stderr, force: bool = False) -> None:
        self.label, self.out = label, out
        self.enabled = force or out.isatty()

    def show(self, fraction: float, note: str = "") -> None:
        if not self.enabled:
            return
        width = 30
        filled = round(max(0.0, min(1.0, fraction)) * width)
        self.out.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}% {note}   ")
        self.out.flush()

    def done(self) -> None:
        if self.enabled:
            self.out.write("\n")


def _table(rows: list[dict[str, Any]], cols: list[str], out: TextIO) -> None:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)), file=out)
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)), file=out)


def _print(args: argparse.Namespace, data: Any, cols: list[str], out: TextIO) -> None:
    if args.json:
        print(json.dumps(data, indent=2), file=out)
    else:
        _table(data if isinstance(data, list) else [data], cols, out)


# --------------------------------------------------------------------------- commands

JOB_COLS = ["id", "name", "state", "progress", "device", "priority"]


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from .client import HubClient, HubError

    if not args.token:
        print("farmhand: no token: pass --token or set FARMHAND_TOKEN", file=err)
        return 2
    hub = HubClient(args.hub, args.token)
    try:
        match args.command:
            case "jobs":
                return _jobs(hub, args, out, err)
            case "devices":
                _print(args, hub.devices(), ["ref", "state", "online", "progress", "job_id"], out)
            case "user":
                return _user(hub, args, out)
            case "token":
                created = hub.create_token(args.name, args.role)
                _print(args, created, ["id", "name", "role", "token"], out)
                if not args.json:
                    print("keep the token now: the hub stores only its hash", file=err)
        return 0
    except HubError as exc:
        print(f"farmhand: {exc.title or exc.status}: {exc.detail}", file=err)
        return 1
    except OSError as exc:
        print(f"farmhand: cannot reach the hub at {args.hub}: {exc}", file=err)
        return 1


USER_COLS = ["id", "username", "role", "disabled_at"]


def _user(hub: Any, args: argparse.Namespace, out: TextIO) -> int:
    from .client import HubError

    users = hub.users()
    if args.user_command == "list":
        _print(args, users, USER_COLS, out)
        return 0
    found = next((u for u in users if u["username"] == args.name), None)
    if found is None:
        raise HubError(404, "User not found", f"no user named {args.name!r}")
    match args.user_command:
        case "disable" | "enable":
            _print(args, hub.set_user_disabled(found["id"], args.user_command == "disable"), USER_COLS, out)
        case "logout":
            print(f"{args.name}: {hub.end_sessions(found['id'])['ended']} session(s) ended", file=out)
        case "delete":
            hub.delete_user(found["id"])
            print(f"{args.name}: deleted", file=out)
    return 0


def _jobs(hub: Any, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    match args.jobs_command:
        case "list":
            _print(args, hub.jobs(args.state), JOB_COLS, out)
        case "cancel":
            _print(args, hub.cancel(args.id), JOB_COLS, out)
        case "submit":
            bar = Bar("upload", err)
            info = hub.upload(args.file, progress=lambda done, total: bar.show(done / total if total else 1.0))
            bar.done()
            jobs = hub.submit(info["sha256"], args.copies, name=args.name, priority=args.priority, device=args.device)
            if args.wait:
                wait_bar = Bar("printing", err)

                def show(current: list[dict[str, Any]]) -> None:
                    finished = sum(j["state"] in ("completed", "failed", "cancelled") for j in current)
                    mean = sum(1.0 if j["state"] == "completed" else (j.get("progress") or 0) for j in current)
                    wait_bar.show(mean / len(current), f"{finished}/{len(current)} done")

                jobs = hub.wait([j["id"] for j in jobs], timeout=args.timeout, progress=show)
                wait_bar.done()
            _print(args, jobs, JOB_COLS, out)
            if args.wait and any(j["state"] != "completed" for j in jobs):
                return 1
    return 0
