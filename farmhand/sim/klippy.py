"""A Klippy simulator: Klipper's API server on a unix socket, for Moonraker to stand in front of.

It speaks the protocol of Klippy's ``webhooks`` module (what Moonraker expects on
``klippy_uds_address``): JSON objects each ended by a 0x03 byte; a request is
``{"id", "method", "params"}``, the answer ``{"id", "result"}`` or ``{"id",
"error": {"error": "WebRequestError", "message"}}``. Endpoints: ``info``,
``list_endpoints``, ``emergency_stop``, ``register_remote_method``,
``objects/list``, ``objects/query``, ``objects/subscribe`` (the answer is the
full status; changes follow every 0.25 s as the subscriber's
``response_template`` with ``{"eventtime", "status"}`` holding only the fields
that changed), ``gcode/script``, ``gcode/help``, ``gcode/restart``,
``gcode/firmware_restart``, ``gcode/subscribe_output`` and
``pause_resume/pause|resume|cancel``. The printer behind it is
``klippy_printer.KlippyPrinter``.

A restart (``RESTART``, ``FIRMWARE_RESTART``) closes every client connection,
as Klippy's does, and the printer reports ``startup`` for ``restart_s`` before
``ready``. Each simulator is one listening socket and one 4 Hz task: a process
can run hundreds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import structlog

from .klippy_printer import GcodeError, KlippyPrinter

log = structlog.get_logger("farmhand.sim.klippy")

TICK_S = 0.25  # Klippy's SUBSCRIPTION_REFRESH_TIME
ETX = b"\x03"


class _Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.subscription: dict[str, list[str]] | None = None
        self.template: dict[str, Any] = {}
        self.output_template: dict[str, Any] | None = None
        self.last: dict[str, dict[str, Any]] = {}

    def send(self, message: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(json.dumps(message, separators=(",", ":")).encode() + ETX)

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


class KlippySimulator:
    """One simulated Klippy host on ``socket_path``; print files come from ``gcodes``."""

    def __init__(self, socket_path: str | Path, gcodes: str | Path, *, lines_per_s: float = 200.0,
                 heat_tau_s: float = 0.5, has_bed: bool = True, restart_s: float = 0.5,
                 software_version: str = "v0.13.0-sim") -> None:
        self.socket_path = Path(socket_path)
        self.printer = KlippyPrinter(Path(gcodes), lines_per_s=lines_per_s, heat_tau_s=heat_tau_s,
                                     has_bed=has_bed, on_output=self._output)
        self.restart_s = restart_s
        self.software_version = software_version
        self.requests: list[str] = []
        """The method of every request received, in order."""
        self._clients: set[_Client] = set()
        self._connections: set[asyncio.Task[object]] = set()
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._remote_methods: dict[str, dict[_Client, dict[str, Any]]] = {}
        self._endpoints = {
            "list_endpoints": self._list_endpoints, "info": self._info, "emergency_stop": self._estop,
            "register_remote_method": self._register_method, "objects/list": self._objects_list,
            "objects/query": self._query, "objects/subscribe": self._subscribe, "gcode/script": self._script,
            "gcode/help": self._help, "gcode/restart": lambda c, p: self._gcode("RESTART"),
            "gcode/firmware_restart": lambda c, p: self._gcode("FIRMWARE_RESTART"),
            "gcode/subscribe_output": self._subscribe_output,
            "pause_resume/pause": lambda c, p: self._gcode("PAUSE"),
            "pause_resume/resume": lambda c, p: self._gcode("RESUME"),
            "pause_resume/cancel": lambda c, p: self._gcode("CANCEL_PRINT"),
        }

    # ------------------------------------------------------------ life

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path), limit=1 << 22)
        self._ticker = asyncio.create_task(self._tick(), name=f"klippy-sim:{self.socket_path.name}")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        self.drop_clients()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._connections:  # each ends on its closed connection; waited for so none outlives the simulator
            await asyncio.wait(self._connections, timeout=2.0)
        self.printer.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def drop_clients(self) -> None:
        """Close every client connection (what Klippy's own restart or exit does)."""
        for client in list(self._clients):
            client.close()
        self._clients.clear()
        self._remote_methods.clear()

    async def restart(self) -> None:
        """Klippy restarts its host software: clients are dropped, the printer starts up afresh."""
        self.drop_clients()
        self.printer.restart()
        await asyncio.sleep(self.restart_s)
        self.printer.ready()

    # ------------------------------------------------------------ connections

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(reader, writer)
        self._clients.add(client)
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        try:
            while True:
                try:
                    data = await reader.readuntil(ETX)
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                except asyncio.LimitOverrunError:
                    log.warning("klippy sim: request too long, connection closed")
                    break
                self._handle(client, data[:-1])
                try:
                    await writer.drain()
                except ConnectionError:
                    break
        finally:
            self._clients.discard(client)
            client.close()

    def _handle(self, client: _Client, data: bytes) -> None:
        try:
            request = json.loads(data)
            method, params = request.get("method"), request.get("params", {})
            if not isinstance(method, str) or not isinstance(params, dict):
                raise ValueError("Invalid request type")
        except (ValueError, AttributeError):
            log.warning("klippy sim: undecodable request", data=data[:200])
            return
        self.requests.append(method)
        handler = self._endpoints.get(method)
        try:
            if handler is None:
                raise GcodeError(f"webhooks: No registered callback for path '{method}'")
            result = handler(client, params)
        except GcodeError as exc:
            response: dict[str, Any] = {"error": {"error": "WebRequestError", "message": str(exc)}}
        else:
            response = {"result": {} if result is None else result}
        if request.get("id") is not None:
            client.send({"id": request["id"], **response})
        if self.printer.restart_requested:
            self.printer.restart_requested = False
            asyncio.get_running_loop().create_task(self.restart())

    # ------------------------------------------------------------ endpoints

    def _list_endpoints(self, client: _Client, params: dict[str, Any]) -> dict[str, Any]:
        return {"endpoints": list(self._endpoints)}

    def _info(self, client: _Client, params: dict[str, Any]) -> dict[str, Any]:
        printer = self.printer
        return {"state": printer.state, "state_message": printer.state_message, "hostname": "klippy-sim",
                "klipper_path": str(Path(__file__).parent), "python_path": sys.executable,
                "process_id": os.getpid(), "user_id": os.getuid(), "group_id": os.getgid(),
                "log_file": None, "config_file": str(printer.gcodes.parent / "config" / "printer.cfg"),
                "software_version": self.software_version, "cpu_info": "simulated", "app": "Klipper"}

    def _estop(self, client: _Client, params: dict[str, Any]) -> None:
        self.printer.invoke_shutdown("Shutdown due to webhooks request")

    def _register_method(self, client: _Client, params: dict[str, Any]) -> None:
        template, method = params.get("response_template"), params.get("remote_method")
        if not isinstance(template, dict) or not isinstance(method, str):
            raise GcodeError("Missing Argument [remote_method]")
        self._remote_methods.setdefault(method, {})[client] = template

    def _objects_list(self, client: _Client, params: dict[str, Any]) -> dict[str, Any]:
        return {"objects": self.printer.objects()}

    def _query(self, client: _Client, params: dict[str, Any], subscribe: bool = False) -> dict[str, Any]:
        objects = params.get("objects")
        if not isinstance(objects, dict) or not all(
                isinstance(k, str) and (v is None or (isinstance(v, list) and all(isinstance(i, str) for i in v)))
                for k, v in objects.items()):
            raise GcodeError("Invalid argument")
        self.printer.advance()
        now = time.monotonic()
        status: dict[str, dict[str, Any]] = {}
        fields: dict[str, list[str]] = {}
        for name, wanted in objects.items():
            full = self.printer.status_of(name, now) or {}
            fields[name] = list(full) if wanted is None else wanted
            status[name] = {k: full.get(k) for k in fields[name]}
        if subscribe:
            client.subscription = fields
            client.template = params.get("response_template") or {}
            client.last = {name: dict(values) for name, values in status.items()}
        return {"eventtime": now, "status": status}

    def _subscribe(self, client: _Client, params: dict[str, Any]) -> dict[str, Any]:
        return self._query(client, params, subscribe=True)

    def _script(self, client: _Client, params: dict[str, Any]) -> None:
        script = params.get("script")
        if not isinstance(script, str):
            raise GcodeError("Missing Argument [script]")
        self.printer.run_script(script)

    def _gcode(self, script: str) -> None:
        self.printer.run_script(script)

    def _help(self, client: _Client, params: dict[str, Any]) -> dict[str, str]:
        return {"SDCARD_PRINT_FILE": "Loads a SD file and starts the print.  May include files in subdirectories.",
                "PAUSE": "Pauses the current print", "RESUME": "Resumes the print from a pause",
                "CANCEL_PRINT": "Cancel the current print", "FIRMWARE_RESTART": "Restart firmware, host, and reload config"}

    def _subscribe_output(self, client: _Client, params: dict[str, Any]) -> None:
        client.output_template = params.get("response_template") or {}

    # ------------------------------------------------------------ pushes

    def _output(self, line: str) -> None:
        for client in list(self._clients):
            if client.output_template is not None:
                client.send({**client.output_template, "params": {"response": line}})

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.printer.advance()
                self._push()
            except Exception:  # a simulator bug must not silence the printer for good
                log.exception("klippy sim tick failed")

    def _push(self) -> None:
        now = time.monotonic()
        cache: dict[str, dict[str, Any]] = {}
        for client in list(self._clients):
            if client.subscription is None:
                continue
            changed: dict[str, dict[str, Any]] = {}
            for name, fields in client.subscription.items():
                if name not in cache:
                    cache[name] = self.printer.status_of(name, now) or {}
                full, last = cache[name], client.last.setdefault(name, {})
                delta = {k: full.get(k) for k in fields if full.get(k) != last.get(k)}
                if delta:
                    last.update(delta)
                    changed[name] = delta
            if changed:
                client.send({**client.template, "params": {"eventtime": now, "status": changed}})
