"""``farmhand broker add-node|add-script|remove NAME``: logins and their rules on a farm's Mosquitto.

Every login gets a block of its own in the ACL file, saying exactly what it may
do: a node its own topics, a script its own request/response pair and reading
the farm. No rule is a ``pattern``: Mosquitto applies patterns to every login,
so ``farmhand/v1/node/%u/#`` gave the hub and the scripts login node namespaces
of their own, and one script could read another's answers. Explicit blocks are
also what an operator can audit in one file. Passwords are hashed by Mosquitto's
own ``mosquitto_passwd``. Mosquitto reads both files again on SIGHUP
(``systemctl reload mosquitto``); nothing else needs restarting.
"""

from __future__ import annotations

import argparse
import re
import secrets
from pathlib import Path

from protocol import topics

from .system_tools import run_tool

ACL = Path("/etc/mosquitto/farmhand.acl")
PASSWD = Path("/etc/mosquitto/farmhand.passwd")
RESERVED = frozenset({"hub"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class BrokerSetupError(Exception):
    """The login cannot be written as asked; the text says why."""


def node_rules(name: str) -> list[str]:
    """An agent: say its own node's state, devices and events; hear its commands, the hub's confirmations
    of its events and the hub's presence. Only the hub writes a node's commands and confirmations: a node
    that could confirm its own events would delete them unstored."""
    node = f"{topics.ROOT}/node/{name}"
    return [
        *(f"topic write {node}/{leaf}" for leaf in ("state", "device/+/status", "device/+/telemetry", "metrics",
                                                     "event")),
        f"topic read {topics.node_command(name)}",
        f"topic read {topics.node_ack(name)}",
        f"topic read {topics.hub_state()}",
    ]


def script_rules(name: str) -> list[str]:
    """A script: ask the hub on its own request topic, hear only its own answers, read the farm."""
    return [
        f"topic write {topics.hub_request(name)}",
        f"topic read {topics.hub_response(name)}",
        f"topic read {topics.hub_state()}",
        f"topic read {topics.hub_alerts()}",
        *(f"topic read {topics.ROOT}/node/+/{leaf}" for leaf in
          ("state", "device/+/status", "device/+/telemetry", "metrics", "event")),
    ]


def _block(kind: str, name: str, rules: list[str]) -> str:
    return "\n".join([f"# {kind} {name} (farmhand broker add-{kind})", f"user {name}", *rules, f"# end {name}"]) + "\n"


def _without(text: str, name: str) -> str:
    pattern = re.compile(rf"^# (node|script) {re.escape(name)} \(farmhand broker add-\w+\)\n.*?^# end {re.escape(name)}\n",
                         re.MULTILINE | re.DOTALL)
    return pattern.sub("", text)


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise BrokerSetupError(f"{name!r} is not a usable login: letters, digits, '_', '.', '-', at most 64")
    if name in RESERVED:
        raise BrokerSetupError(f"{name!r} is the hub's own login")


def _passwd(*args: str) -> None:
    run_tool("mosquitto_passwd", "mosquitto", list(args), BrokerSetupError)


def add_login(kind: str, name: str, password: str, *, acl: Path = ACL, passwd: Path = PASSWD) -> None:
    """Give ``name`` a password and the rules of a ``node`` or a ``script``, replacing any it had."""
    _check_name(name)
    if kind == "node" and name == "scripts":
        raise BrokerSetupError("'scripts' is the shipped script login, not a node")
    rules = {"node": node_rules, "script": script_rules}[kind](name)
    text = acl.read_text() if acl.exists() else ""
    text = _without(text, name)
    if re.search(rf"^user {re.escape(name)}$", text, re.MULTILINE):
        raise BrokerSetupError(f"{acl} has rules for {name!r} that farmhand did not write; edit them by hand")
    acl.write_text(text.rstrip("\n") + "\n\n" + _block(kind, name, rules))
    if not passwd.exists():
        passwd.touch(mode=0o600)
    _passwd("-b", str(passwd), name, password)


def remove_login(name: str, *, acl: Path = ACL, passwd: Path = PASSWD) -> None:
    """Take away ``name``'s rules and password: it can neither log in nor, logged in, do anything."""
    text = acl.read_text()
    kept = _without(text, name)
    if kept == text:
        raise BrokerSetupError(f"{acl} has no farmhand rules for {name!r}")
    acl.write_text(kept)
    _passwd("-D", str(passwd), name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="broker_command", required=True, metavar="ACTION")
    for action, helptext in (("add-node", "Let an agent log in: its node's topics only."),
                             ("add-script", "Let a script log in: its own requests and answers, reading the farm."),
                             ("remove", "Take a login away (a retired Pi, a leaked password).")):
        p = sub.add_parser(action, help=helptext, description=helptext,
                           epilog=f"example: farmhand broker {action} pi-7\nthen: systemctl reload mosquitto")
        p.add_argument("name", help="the login: a node's node_id, or a script's name")
        p.add_argument("--acl", type=Path, default=ACL, help=f"Mosquitto's acl_file (default {ACL})")
        p.add_argument("--passwd", type=Path, default=PASSWD, help=f"Mosquitto's password_file (default {PASSWD})")
        if action != "remove":
            p.add_argument("--password", default=None, help="the password (default: a new random one, printed once)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.broker_command == "remove":
            remove_login(args.name, acl=args.acl, passwd=args.passwd)
            print(f"removed {args.name}; reload Mosquitto (systemctl reload mosquitto)")
            return 0
        kind = args.broker_command.removeprefix("add-")
        password = args.password or secrets.token_urlsafe(18)
        add_login(kind, args.name, password, acl=args.acl, passwd=args.passwd)
    except BrokerSetupError as exc:
        print(f"farmhand broker: {exc}")
        return 2
    print(f"added {kind} {args.name}; reload Mosquitto (systemctl reload mosquitto)")
    if not args.password:
        print(f"password (shown once): {password}")
    print(f"its URL: mqtts://{args.name}:{'<password>' if not args.password else '…'}@BROKER:8883")
    return 0
