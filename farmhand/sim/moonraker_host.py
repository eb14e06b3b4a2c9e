"""The real Moonraker (installed by ``scripts/peers/moonraker.sh`` into ``.peers/moonraker/``) in front of a Klippy.

``MoonrakerHost`` lays out a printer data folder (config, gcodes, logs,
database, comms), writes a ``moonraker.conf`` listening on loopback with
Moonraker's own ``[authorization]`` (no trusted clients, so every request needs
the API key), and runs Moonraker as a child process. Behind it stands either
our ``KlippySimulator`` on the folder's ``comms/klippy.sock`` or a real Klippy
started on that socket. The API key is read over Moonraker's own unix socket
(``access.get_api_key``), which Moonraker trusts as a local client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from .children import dies_with_parent

ETX = b"\x03"


def peer_python(root: Path | None = None) -> Path:
    """The Python of Moonraker's own venv under the repository's ``.peers/``."""
    root = root or Path(__file__).resolve().parents[2]
    return root / ".peers" / "moonraker" / "bin" / "python"


def installed(root: Path | None = None) -> bool:
    """Whether ``scripts/peers/moonraker.sh`` finished installing Moonraker (it leaves a stamp last)."""
    return any(peer_python(root).parent.parent.glob(".installed-*"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MoonrakerHost:
    """One Moonraker process over ``data``; ``start()`` returns once it answers and knows its API key."""

    def __init__(self, data: Path, *, port: int | None = None, python: Path | None = None,
                 authorization: bool = True, klippy_socket: Path | None = None) -> None:
        """``klippy_socket``: where Klippy's API server listens (default: the folder's ``comms/klippy.sock``)."""
        self.data = data
        self._klippy_socket = klippy_socket
        self.port = port or free_port()
        self.python = python or peer_python()
        self.authorization = authorization
        self.api_key = ""
        self.proc: subprocess.Popen[bytes] | None = None
        for sub in ("config", "gcodes", "logs", "database", "comms"):
            (data / sub).mkdir(parents=True, exist_ok=True)

    @property
    def gcodes(self) -> Path:
        return self.data / "gcodes"

    @property
    def klippy_socket(self) -> Path:
        return self._klippy_socket or self.data / "comms" / "klippy.sock"

    @property
    def unix_socket(self) -> Path:
        return self.data / "comms" / "moonraker.sock"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data / "logs" / "moonraker.log"

    def write_config(self) -> Path:
        conf = self.data / "config" / "moonraker.conf"
        auth = ("[authorization]\nforce_logins: False\ncors_domains:\n  http://127.0.0.1\n\n"
                if self.authorization else "")
        conf.write_text(
            f"[server]\nhost: 127.0.0.1\nport: {self.port}\nklippy_uds_address: {self.klippy_socket}\n\n"
            f"{auth}"
            "[machine]\nprovider: none\nvalidate_service: False\nvalidate_config: False\n\n"
            "[file_manager]\nenable_object_processing: False\n\n"
            "[history]\n\n"
        )
        return conf

    async def start(self, timeout: float = 60.0) -> None:
        if not self.python.exists():
            raise FileNotFoundError(f"Moonraker is not installed: {self.python} (run scripts/peers/moonraker.sh)")
        conf = self.write_config()
        with contextlib.suppress(FileNotFoundError):
            self.unix_socket.unlink()
        env = {**os.environ, "PYTHONPATH": ""}
        with open(self.data / "logs" / "moonraker.stderr", "ab") as err:
            self.proc = subprocess.Popen(
                [str(self.python), "-m", "moonraker", "-d", str(self.data), "-c", str(conf), "-l",
                 str(self.log_file), "-u", str(self.unix_socket)],
                stdout=subprocess.DEVNULL, stderr=err, env=env, preexec_fn=dies_with_parent())
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Moonraker exited with {self.proc.returncode}: {self.tail()}")
            try:
                self.api_key = str(await self.call("access.get_api_key"))
                await self.call("server.info")
                return
            except (OSError, asyncio.IncompleteReadError, RuntimeError):
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"Moonraker did not answer in {timeout:.0f} s: {self.tail()}") from None
                await asyncio.sleep(0.2)

    async def call(self, method: str, **params: object) -> object:
        """A JSON-RPC call over Moonraker's unix socket (local, so trusted)."""
        reader, writer = await asyncio.open_unix_connection(str(self.unix_socket), limit=1 << 22)
        try:
            request = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
            writer.write(json.dumps(request).encode() + ETX)
            await writer.drain()
            async with asyncio.timeout(10):
                while True:
                    message = json.loads((await reader.readuntil(ETX))[:-1])
                    if message.get("id") == 1:
                        break
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']}")
            return message["result"]
        finally:
            writer.close()

    async def wait_klippy(self, state: str = "ready", timeout: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            info = await self.call("server.info")
            if isinstance(info, dict) and info.get("klippy_state") == state:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"Klippy did not become {state}: {info}")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        for _ in range(100):
            if proc.poll() is not None:
                return
            await asyncio.sleep(0.05)
        proc.kill()
        proc.wait(5)

    def tail(self, lines: int = 30) -> str:
        texts = []
        for path in (self.data / "logs" / "moonraker.stderr", self.log_file):
            if path.exists():
                texts.append("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(texts)


class SimulatedKlipper:
    """A Klipper printer as the network sees it: the real Moonraker with our Klippy simulator behind it.

    ``sim`` options go to ``KlippySimulator`` (``lines_per_s``, ``heat_tau_s``, ``has_bed``…).
    Connect a driver to ``host.url`` with ``host.api_key``.
    """

    def __init__(self, data: Path, *, port: int | None = None, **sim: Any) -> None:
        from .klippy import KlippySimulator

        self.host = MoonrakerHost(data, port=port)
        self.sim = KlippySimulator(self.host.klippy_socket, self.host.gcodes, **sim)

    async def start(self) -> None:
        await self.sim.start()
        await self.host.start()
        await self.host.wait_klippy()

    async def stop(self) -> None:
        await self.host.stop()
        await self.sim.stop()
