"""A Moonraker simulator: Moonraker's JSON-RPC websocket and file upload in front of simulated Klippers.

The driver's tests run the real Moonraker (``moonraker_host``); this is for where many are needed at once
(``bench.network_printers``, the demo), since one real Moonraker is a process of ~60 MB and this machine
runs dozens of printers. Each printer is a ``klippy_printer.KlippyPrinter`` (the printer the Klippy
simulator serves), asked directly instead of over Klippy's unix socket, so a printer costs a port and a
few objects; one aiohttp app serves them all, each on a port of its own, found by the port a request came
in on.

What a client sees follows Moonraker's public API: ``/websocket`` with JSON-RPC 2.0 (an ``X-Api-Key``
header, or ``api_key`` in ``server.connection.identify``; a wrong key is refused); ``server.info``,
``printer.info``, ``printer.objects.list|query|subscribe`` (an object Klipper lacks is left out of the
answer), ``notify_status_update`` every 0.25 s with only the subscribed fields that changed (params
``[status, eventtime]``), ``notify_proc_stat_update`` every second, ``notify_gcode_response``,
``notify_klippy_shutdown|disconnected|ready``; ``printer.print.start|pause|resume|cancel``,
``printer.emergency_stop``, ``printer.firmware_restart``, ``printer.gcode.script`` (Klipper's refusal is
error 400 in its words), ``server.files.metadata``; ``POST /server/files/upload`` (multipart ``file``,
``root``, ``checksum`` — a sha256 that does not match is refused with 422).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from .klippy_objects import status_changes
from .klippy_printer import GcodeError, KlippyPrinter

TICK_S = 0.25
"""Klippy's subscription refresh: Moonraker passes changes on at this pace."""
PROC_STAT_S = 1.0
VERSION = "v0.9.3-sim"
_HANDLER = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RpcFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Client:
    """One websocket: whether it logged in, what it subscribed to, and what it was last told."""

    def __init__(self, ws: web.WebSocketResponse, authorised: bool) -> None:
        self.ws = ws
        self.authorised = authorised
        self.subscription: dict[str, list[str]] = {}
        self.last: dict[str, dict[str, Any]] = {}

    def notify(self, method: str, params: list[Any]) -> None:
        if not self.ws.closed:
            asyncio.get_running_loop().create_task(
                self.ws.send_str(json.dumps({"jsonrpc": "2.0", "method": method, "params": params})))


class SimMoonraker:
    """One simulated Moonraker host and its Klipper printer; its G-code files live in ``gcodes``."""

    def __init__(self, gcodes: Path, *, api_key: str | None = None, print_s: float | None = None,
                 lines_per_s: float = 200.0, restart_s: float = 0.5) -> None:
        """``print_s``: every print takes this long, whatever its length (else ``lines_per_s`` paces it)."""
        gcodes.mkdir(parents=True, exist_ok=True)
        self.gcodes = gcodes
        self.api_key = api_key
        self.print_s = print_s
        self.restart_s = restart_s
        self.printer = KlippyPrinter(gcodes, lines_per_s=lines_per_s, on_output=self._output)
        self.clients: set[_Client] = set()
        self.port = 0
        self._was_shutdown = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status_of(self, name: str, now: float, fields: list[str] | None = None) -> dict[str, Any] | None:
        """One of Klipper's objects as Klippy reports it, for a client that wants ``fields`` of it (None: all).

        A subclass may read its sensors differently; ``fields`` tells it whether a reading is asked for.
        """
        return self.printer.status_of(name, now)

    def notify_all(self, method: str, params: list[Any]) -> None:
        for client in list(self.clients):
            client.notify(method, params)

    def _output(self, line: str) -> None:
        self.notify_all("notify_gcode_response", [line])

    def tick(self, now: float) -> None:
        """Klipper moves on; subscribers hear what changed."""
        self.printer.advance(now)
        self._follow_shutdown()
        wanted: dict[str, set[str]] = {}
        for client in self.clients:
            for name, fields in client.subscription.items():
                wanted.setdefault(name, set()).update(fields)
        cache = {name: self.status_of(name, now, sorted(fields)) or {} for name, fields in wanted.items()}
        for client in list(self.clients):
            changed = status_changes(client.subscription, cache.__getitem__, client.last)
            if changed:
                client.notify("notify_status_update", [changed, now])

    def _follow_shutdown(self) -> None:
        if self.printer.shutdown and not self._was_shutdown:
            self.notify_all("notify_klippy_shutdown", [])
        self._was_shutdown = self.printer.shutdown

    async def restart_klippy(self) -> None:
        """RESTART or FIRMWARE_RESTART: Moonraker loses Klippy, and tells its clients when it is back."""
        self.notify_all("notify_klippy_disconnected", [])
        for client in self.clients:
            client.subscription, client.last = {}, {}
        self.printer.restart()
        await asyncio.sleep(self.restart_s)
        self.printer.ready()
        self._was_shutdown = False
        self.notify_all("notify_klippy_ready", [])

    # ------------------------------------------------------------ methods

    def call(self, client: _Client, method: str, params: dict[str, Any]) -> Any:
        if method == "server.connection.identify":
            return self._identify(client, params)
        if not client.authorised:
            raise RpcFailure(401, "Unauthorized")
        now = time.monotonic()
        printer = self.printer
        match method:
            case "server.info":
                return {"klippy_connected": True, "klippy_state": printer.state, "components": ["file_manager"],
                        "failed_components": [], "registered_directories": ["gcodes"], "warnings": [],
                        "websocket_count": len(self.clients), "moonraker_version": VERSION,
                        "api_version": [1, 5, 0], "api_version_string": "1.5.0"}
            case "printer.info":
                return {"state": printer.state, "state_message": printer.state_message, "hostname": "moonraker-sim",
                        "software_version": "v0.13.0-sim", "cpu_info": "simulated"}
            case "printer.objects.list":
                self._ready()
                return {"objects": printer.objects()}
            case "printer.objects.query" | "printer.objects.subscribe":
                self._ready()
                return self._query(client, params, now, subscribe=method.endswith("subscribe"))
            case "printer.print.start":
                self._start(str(params.get("filename", "")))
            case "printer.print.pause" | "printer.print.resume" | "printer.print.cancel":
                self._gcode({"pause": "PAUSE", "resume": "RESUME", "cancel": "CANCEL_PRINT"}[method.rsplit(".", 1)[1]])
            case "printer.emergency_stop":
                printer.invoke_shutdown("Shutdown due to webhooks request")
                self._follow_shutdown()
            case "printer.firmware_restart" | "printer.restart":
                self._gcode("FIRMWARE_RESTART" if method.endswith("firmware_restart") else "RESTART")
            case "printer.gcode.script":
                self._gcode(str(params.get("script", "")))
            case "server.files.metadata":
                return self._metadata(str(params.get("filename", "")))
            case _:
                raise RpcFailure(-32601, f"Method not found: {method}")
        return "ok"

    def _identify(self, client: _Client, params: dict[str, Any]) -> dict[str, Any]:
        key = params.get("api_key")
        if key is not None and self.api_key is not None and not secrets.compare_digest(str(key), self.api_key):
            raise RpcFailure(-32602, "Invalid API Key")
        client.authorised = client.authorised or key is not None or self.api_key is None
        return {"connection_id": id(client)}

    def _ready(self) -> None:
        if self.printer.state != "ready" and not self.printer.shutdown:
            raise RpcFailure(503, f"Klippy Host not connected: {self.printer.state_message.strip()}")

    def _query(self, client: _Client, params: dict[str, Any], now: float, *, subscribe: bool) -> dict[str, Any]:
        objects = params.get("objects")
        if not isinstance(objects, dict):
            raise RpcFailure(-32602, "Invalid argument: objects")
        status: dict[str, dict[str, Any]] = {}
        for name, wanted in objects.items():
            full = self.status_of(name, now, wanted)
            if full is None:
                continue  # an object this Klipper's config lacks is left out, as Klippy does
            status[name] = full if wanted is None else {k: full.get(k) for k in wanted if k in full}
        if subscribe:
            client.subscription = {name: list(values) for name, values in status.items()}
            client.last = {name: dict(values) for name, values in status.items()}
        return {"eventtime": now, "status": status}

    def _start(self, filename: str) -> None:
        path = self.gcodes / filename.lstrip("/")
        if self.print_s is not None and path.is_file():
            with path.open("rb") as f:
                lines = sum(1 for _ in f)
            self.printer.lines_per_s = max(1.0, lines / self.print_s)
        self._gcode(f'SDCARD_PRINT_FILE FILENAME="{filename}"')

    def _gcode(self, script: str) -> None:
        try:
            self.printer.run_script(script)
        except GcodeError as exc:
            raise RpcFailure(400, str(exc)) from None
        finally:
            self._follow_shutdown()
            if self.printer.restart_requested:
                self.printer.restart_requested = False
                asyncio.get_running_loop().create_task(self.restart_klippy())

    def _metadata(self, filename: str) -> dict[str, Any]:
        path = self.gcodes / filename.lstrip("/")
        if not path.is_file():
            raise RpcFailure(404, f"Metadata not available for <{filename}>")
        stat = path.stat()
        return {"filename": filename, "size": stat.st_size, "modified": stat.st_mtime, "print_start_time": None,
                "job_id": None}


HOST = web.RequestKey("host", SimMoonraker)
AUTHORISED = web.RequestKey("authorised", bool)


class MoonrakerFarm:
    """Many simulated Moonraker hosts served from one aiohttp app and one ticking task."""

    def __init__(self) -> None:
        self.app = web.Application(middlewares=[self._dispatch], client_max_size=1 << 30)
        self.app.router.add_get("/websocket", self._websocket)
        self.app.router.add_post("/server/files/upload", self._upload)
        self._runner = web.AppRunner(self.app, access_log=None)
        self._setup = False
        self.by_port: dict[int, SimMoonraker] = {}
        self._sites: list[web.SockSite] = []
        self._ticker: asyncio.Task[None] | None = None

    async def add(self, host: SimMoonraker) -> SimMoonraker:
        if not self._setup:
            await self._runner.setup()
            self._setup = True
            self._ticker = asyncio.create_task(self._tick(), name="moonraker-sim")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(self._runner, sock)
        await site.start()
        host.port = int(sock.getsockname()[1])
        self.by_port[host.port] = host
        self._sites.append(site)
        return host

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
            self._ticker = None
        for host in self.by_port.values():
            for client in list(host.clients):
                await client.ws.close()
            host.printer.close()
        if self._setup:
            await self._runner.cleanup()
            self._setup = False

    async def _tick(self) -> None:
        last_stat = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            stat = now - last_stat >= PROC_STAT_S
            last_stat = now if stat else last_stat
            for host in self.by_port.values():
                host.tick(now)
                if stat:
                    host.notify_all("notify_proc_stat_update", [{
                        "moonraker_stats": {"time": time.time(), "cpu_usage": 1.0, "memory": 40000, "mem_units": "kB"},
                        "cpu_temp": None, "network": {}, "websocket_connections": len(host.clients)}])

    # ------------------------------------------------------------ HTTP

    @web.middleware
    async def _dispatch(self, request: web.Request, handler: _HANDLER) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        host = self.by_port.get(sockname[1]) if sockname else None
        if host is None:
            raise web.HTTPServiceUnavailable()
        key = request.headers.get("X-Api-Key")
        if key is not None and host.api_key is not None and not secrets.compare_digest(key, host.api_key):
            return web.json_response({"error": {"code": 401, "message": "Unauthorized"}}, status=401)
        request[HOST] = host
        request[AUTHORISED] = host.api_key is None or key is not None
        if request.path != "/websocket" and not request[AUTHORISED]:
            return web.json_response({"error": {"code": 401, "message": "Unauthorized"}}, status=401)
        return await handler(request)

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        host = request[HOST]
        ws = web.WebSocketResponse(max_msg_size=1 << 22)
        await ws.prepare(request)
        client = _Client(ws, request[AUTHORISED])
        host.clients.add(client)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await ws.send_str(json.dumps(self._answer(host, client, msg.data)))
        finally:
            host.clients.discard(client)
        return ws

    def _answer(self, host: SimMoonraker, client: _Client, text: str) -> dict[str, Any]:
        try:
            request = json.loads(text)
            method, params, request_id = request["method"], request.get("params") or {}, request.get("id")
        except (ValueError, KeyError, TypeError):
            return {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None}
        try:
            return {"jsonrpc": "2.0", "result": host.call(client, str(method), params), "id": request_id}
        except RpcFailure as exc:
            return {"jsonrpc": "2.0", "error": {"code": exc.code, "message": exc.message}, "id": request_id}

    async def _upload(self, request: web.Request) -> web.Response:
        host = request[HOST]
        fields: dict[str, str] = {}
        stored: tuple[str, int, str] | None = None
        async for part in await request.multipart():
            if part.name == "file" and part.filename:  # type: ignore[union-attr]
                name = Path(part.filename).name  # type: ignore[union-attr]
                digest, size = hashlib.sha256(), 0
                partial = host.gcodes / f".{name}.part"
                with partial.open("wb") as out:
                    while chunk := await part.read_chunk(1 << 16):  # type: ignore[union-attr]
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                stored = (name, size, digest.hexdigest())
            elif part.name:
                fields[part.name] = (await part.text()).strip()  # type: ignore[union-attr]
        if stored is None:
            return web.json_response({"error": {"code": 400, "message": "No file name specifier in request"}},
                                     status=400)
        name, size, sha = stored
        partial = host.gcodes / f".{name}.part"
        if fields.get("checksum") and fields["checksum"].lower() != sha:
            partial.unlink(missing_ok=True)
            return web.json_response({"error": {"code": 422, "message": "File checksum mismatch: expected "
                                                f"{fields['checksum']}, calculated {sha}"}}, status=422)
        partial.replace(host.gcodes / name)
        return web.json_response({"item": {"path": name, "root": fields.get("root", "gcodes"), "size": size,
                                           "modified": time.time(), "permissions": "rw"},
                                  "print_started": False, "print_queued": False, "action": "create_file"}, status=201)
