"""The MQTT side of simulated Bambu printers: one real Mosquitto, one TLS listener per printer.

A Bambu printer in LAN mode runs its own broker on 8883: TLS with a
self-signed certificate whose common name is the serial, one login (``bblp``,
the access code). Here one Mosquitto process plays all the printers' brokers:
each printer gets a listener on a port of its own with its own certificate and
password file (``per_listener_settings``), so a driver sees exactly what it
would see on the printer, and dozens of printers cost one process. The
simulated printers themselves connect on a plain loopback listener.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .children import dies_with_parent


def make_certificate(folder: Path, serial: str) -> tuple[Path, Path]:
    """A self-signed certificate with CN = serial, as the printer has: (cert, key) PEM files."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{serial}.crt", folder / f"{serial}.key"
    if not cert.exists():
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "3650", "-subj", f"/CN={serial}"],
            check=True, capture_output=True)
    return cert, key


def password_line(user: str, password: str) -> str:
    """A Mosquitto password file line (``$6$``: SHA-512 over password and salt), without mosquitto_passwd."""
    salt = secrets.token_bytes(12)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return f"{user}:$6${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if not found:
        raise FileNotFoundError("mosquitto is not installed (scripts/setup-system.sh installs it)")
    return found


@dataclass(frozen=True)
class PrinterListener:
    serial: str
    access_code: str
    port: int
    cert: Path
    key: Path


class BambuBroker:
    """One Mosquitto process serving every simulated printer's TLS listener; add printers before ``start``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.internal_port = free_port()
        self.listeners: dict[str, PrinterListener] = {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def internal_url(self) -> str:
        """Where the simulated printers connect (plain MQTT on loopback, no login)."""
        return f"mqtt://127.0.0.1:{self.internal_port}"

    def add_printer(self, serial: str, access_code: str) -> PrinterListener:
        cert, key = make_certificate(self.workdir / "certs", serial)
        taken = {self.internal_port, *(p.port for p in self.listeners.values())}
        port = free_port()
        while port in taken:  # a port just released can come round again
            port = free_port()
        listener = PrinterListener(serial, access_code, port, cert, key)
        (self.workdir / f"{serial}.passwd").write_text(password_line("bblp", access_code))
        self.listeners[serial] = listener
        return listener

    def _config(self) -> str:
        lines = ["per_listener_settings true", f"listener {self.internal_port} 127.0.0.1", "allow_anonymous true"]
        for p in self.listeners.values():
            lines += [f"listener {p.port} 127.0.0.1", f"certfile {p.cert}", f"keyfile {p.key}",
                      "allow_anonymous false", f"password_file {self.workdir / f'{p.serial}.passwd'}"]
        lines += ["persistence false", "max_queued_messages 10000"]
        # As root Mosquitto drops to its own user, which cannot read pytest's 0700 folders.
        if os.geteuid() == 0:
            lines.append("user root")
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self._config())
        log = self.workdir / "mosquitto.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                         stderr=out, preexec_fn=dies_with_parent())
        ports = [self.internal_port, *(p.port for p in self.listeners.values())]
        deadline = time.monotonic() + 10
        while not all(_listening(port) for port in ports):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"mosquitto did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
