"""Running a system program on the operator's behalf (mosquitto_passwd, openssl) with one clear error."""

from __future__ import annotations

import shutil
import subprocess


def run_tool(tool: str, package: str, args: list[str], error: type[Exception]) -> None:
    """Run ``tool args``; raise ``error`` saying what to install, or what the program said when it failed."""
    path = shutil.which(tool)
    if path is None:
        raise error(f"{tool} is not installed (Debian: apt-get install {package})")
    done = subprocess.run([path, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise error(f"{tool} {args[0] if args else ''} failed: {(done.stderr or done.stdout).strip()}")
