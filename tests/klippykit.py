"""The real Klippy, running without a printer, for tests and benchmarks: its pseudo-terminal and its API socket.

Klippy (Klipper's host program, installed by ``scripts/peers/klippy.sh`` in
``.peers/klippy/``) runs in its batch mode: ``-o`` writes what it would send
the MCU to a file instead of a serial port, ``-d`` gives it the MCU's data
dictionary (``tests/klippy/mcu.dict``, see ``tests/klippy/make_dictionary.py``),
``-I`` names the pseudo-terminal it creates, ``-a`` its API server's Unix
socket (what Moonraker connects to). Everything above the MCU is Klippy's own
code: the G-code parser, the toolhead and extruder positions, shutdown and
FIRMWARE_RESTART.

    with running_klippy(tmp_path) as klippy:          # tests/klippy/printer.cfg
        port = klippy.pty                               # what ``farmhand print`` opens
        klippy.query({"toolhead": ["position"]})        # the API server's objects/query
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KLIPPY_PYTHON = ROOT / ".peers" / "klippy" / "bin" / "python"
CONFIG = Path(__file__).parent / "klippy" / "printer.cfg"
DICTIONARY = Path(__file__).parent / "klippy" / "mcu.dict"
START_TIMEOUT_S = 30.0
# Klippy's API server ends each JSON message with an ETX byte.
ETX = b"\x03"


class KlippyError(RuntimeError):
    """Klippy did not start, or its API server answered with an error."""


def available() -> bool:
    return KLIPPY_PYTHON.is_file()


@dataclass
class Klippy:
    pty: Path
    """The pseudo-terminal Klippy reads G-code from (its /tmp/printer)."""
    api_socket: Path
    """The API server's Unix socket (Moonraker's way in)."""
    log: Path
    process: subprocess.Popen[bytes]

    def request(self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 10.0) -> Any:
        """One API-server request on a fresh connection; its ``result``, or KlippyError with Klippy's message."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(self.api_socket))
            sock.sendall(json.dumps({"id": 1, "method": method, "params": params or {}}).encode() + ETX)
            data = b""
            while ETX not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    raise KlippyError(f"Klippy closed the API socket before answering {method}")
                data += chunk
        answer = json.loads(data.split(ETX, 1)[0])
        if "error" in answer:
            raise KlippyError(f"{method}: {answer['error'].get('message', answer['error'])}")
        return answer["result"]

    def query(self, objects: dict[str, list[str] | None]) -> dict[str, Any]:
        """``objects/query``: the printer objects' status, e.g. {"toolhead": ["position"]}."""
        return self.request("objects/query", {"objects": objects})["status"]

    def state(self) -> str:
        """Klippy's state: 'ready', 'startup', 'shutdown' or 'error'."""
        return str(self.request("info")["state"])

    def wait_state(self, wanted: str, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise KlippyError(f"Klippy exited ({self.process.returncode}); its log:\n{self.log_tail()}")
            try:
                last = self.state()
                if last == wanted:
                    return
            except (OSError, KlippyError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise KlippyError(f"Klippy is not {wanted} after {timeout_s:.0f} s ({last}); its log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextmanager
def running_klippy(workdir: Path, config: Path = CONFIG, *, dictionary: Path = DICTIONARY) -> Iterator[Klippy]:
    """Start Klippy with ``config`` in ``workdir``, wait until it is ready, stop it afterwards."""
    if not available():
        raise KlippyError(f"Klippy is not installed at {KLIPPY_PYTHON}: run scripts/peers/klippy.sh")
    workdir.mkdir(parents=True, exist_ok=True)
    # Unix socket paths are short (108 bytes): a deep tmp_path would not fit.
    short = Path(os.path.realpath(workdir))
    pty, api, log = short / "printer", short / "api.sock", short / "klippy.log"
    for stale in (pty, api):
        stale.unlink(missing_ok=True)
    process = subprocess.Popen(
        [str(KLIPPY_PYTHON), "-m", "klippy.klippy", str(config), "-I", str(pty), "-a", str(api),
         "-o", os.devnull, "-d", str(dictionary), "-l", str(log)],
        cwd=short, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    klippy = Klippy(pty=pty, api_socket=api, log=log, process=process)
    try:
        klippy.wait_state("ready")
        yield klippy
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
