"""A private Mosquitto set up as the shipped one is (systemd/mosquitto-farmhand.conf and .acl): every client
logs in, the hub and a script with passwords of their own, two agents and a second script added the way an
operator adds them (``farmhand broker add-node``, ``add-script``)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from farmhand.broker_cli import add_login

from .conftest import PrivateMosquitto

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
USERS = {"hub": "hub-secret", "scripts": "scripts-secret", "erp": "erp-secret", "pi-1": "pi-1-secret",
         "pi-2": "pi-2-secret"}


def shipped_access(passwd: Path, acl: Path) -> str:
    """The shipped config's access and size lines, its files put where this test keeps them."""
    lines = []
    for line in (SYSTEMD / "mosquitto-farmhand.conf").read_text().splitlines():
        key = line.split(" ", 1)[0]
        if key in ("allow_anonymous", "max_packet_size"):
            lines.append(line)
        elif key == "password_file":
            lines.append(f"password_file {passwd}")
        elif key == "acl_file":
            lines.append(f"acl_file {acl}")
    assert len(lines) == 4, lines
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def locked_broker(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    """Started; its ACL is ``tmp_path / "farmhand.acl"`` and its password file ``farmhand.passwd`` beside it."""
    passwd, acl = tmp_path / "farmhand.passwd", tmp_path / "farmhand.acl"
    shutil.copy(SYSTEMD / "mosquitto-farmhand.acl", acl)
    passwd.touch(mode=0o600)
    for user in ("hub", "scripts"):
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, USERS[user]], check=True, capture_output=True)
    for node in ("pi-1", "pi-2"):
        add_login("node", node, USERS[node], acl=acl, passwd=passwd)
    add_login("script", "erp", USERS["erp"], acl=acl, passwd=passwd)
    broker = PrivateMosquitto(tmp_path, shipped_access(passwd, acl))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def login(broker: PrivateMosquitto, user: str) -> str:
    return f"mqtt://{user}:{USERS[user]}@127.0.0.1:{broker.port}"
