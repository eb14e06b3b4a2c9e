"""``farmhand certs ca|issue``: a small certificate authority for one farm, made with OpenSSL.

A farm network carries broker passwords and the agents' bearer tokens, so the
broker (MQTT on 8883) and the hub (HTTPS) present certificates that the agents
verify against the farm's own CA. Farms rarely have a CA, so this makes one:
``ca`` once, then ``issue`` for the broker and the hub with every name and
address the agents use to reach them. Private keys are written 0600 and never
leave the folder. OpenSSL does the cryptography (Debian installs it with the
base system); this only chooses sound settings: P-256 keys, SHA-256, the CA
limited to signing, leaf certificates for servers and clients alike, and the
subjectAltName entries that TLS clients check names against.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import tempfile
from pathlib import Path

from .system_tools import run_tool

DEFAULT_DIR = Path("/etc/farmhand/certs")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class CertError(Exception):
    """OpenSSL is missing or refused; the text says what it said."""


def _openssl(*args: str) -> None:
    run_tool("openssl", "openssl", list(args), CertError)


def _private(path: Path) -> None:
    os.chmod(path, 0o600)


def make_ca(folder: Path, *, name: str = "Farmhand farm CA", days: int = 3650) -> Path:
    """Create ``ca.crt`` and ``ca.key`` in ``folder``; refuses to replace an existing CA."""
    folder.mkdir(parents=True, exist_ok=True)
    crt, key = folder / "ca.crt", folder / "ca.key"
    if crt.exists() or key.exists():
        raise CertError(f"{folder} already has a CA; every certificate it issued depends on it")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-sha256", "-nodes",
             "-keyout", str(key), "-out", str(crt), "-days", str(days), "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _private(key)
    return crt


def _alt_names(hosts: list[str]) -> str:
    entries = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
            entries.append(f"IP:{host}")
        except ValueError:
            entries.append(f"DNS:{host}")
    return ",".join(entries)


def issue(folder: Path, name: str, hosts: list[str], *, days: int = 825) -> tuple[Path, Path]:
    """Issue ``name.crt``/``name.key`` signed by the farm CA in ``folder``, valid for ``hosts``."""
    if not _NAME.match(name):
        raise CertError(f"{name!r} is not a usable certificate name: letters, digits, '_', '.', '-'")
    if not hosts:
        raise CertError("give every host name and address clients use to reach it (--host)")
    ca_crt, ca_key = folder / "ca.crt", folder / "ca.key"
    if not ca_crt.exists() or not ca_key.exists():
        raise CertError(f"{folder} has no CA yet: run 'farmhand certs ca --dir {folder}' first")
    crt, key = folder / f"{name}.crt", folder / f"{name}.key"
    with tempfile.TemporaryDirectory() as tmp:
        csr, ext = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
        ext.write_text(f"subjectAltName={_alt_names(hosts)}\nbasicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n")
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-sha256", "-nodes",
                 "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        _private(key)
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
                 "-sha256", "-days", str(days), "-extfile", str(ext), "-out", str(crt))
    return crt, key


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    ca = sub.add_parser("ca", help="Make the farm's CA (once).", description="Make the farm's CA (once).",
                        epilog="example: farmhand certs ca --dir /etc/farmhand/certs")
    ca.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"where the CA lives (default {DEFAULT_DIR})")
    ca.add_argument("--name", default="Farmhand farm CA", help="the CA's common name")
    one = sub.add_parser("issue", help="Issue a certificate for the broker or the hub.",
                         description="Issue a certificate for the broker or the hub, signed by the farm CA.",
                         epilog="example: farmhand certs issue broker --host broker.farm.lan --host 192.168.1.5")
    one.add_argument("name", help="file name and common name, e.g. broker or hub")
    one.add_argument("--host", action="append", default=[], help="a name or address clients use (repeat)")
    one.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"where the CA lives (default {DEFAULT_DIR})")
    one.add_argument("--days", type=int, default=825, help="validity in days (default 825)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.certs_command == "ca":
            crt = make_ca(args.dir, name=args.name)
            print(f"CA: {crt} (give this file to every agent as its ca_file); key: {args.dir / 'ca.key'}")
        else:
            crt, key = issue(args.dir, args.name, args.host, days=args.days)
            print(f"certificate: {crt}\nkey: {key}")
    except CertError as exc:
        print(f"farmhand certs: {exc}")
        return 2
    return 0
