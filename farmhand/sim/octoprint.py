"""An OctoPrint simulator: the parts of OctoPrint 1.11's REST API and push socket a client uses.

The tests run the real OctoPrint (from PyPI, with its virtual printer); this is for
where many are needed at once (the network-printer benchmark, the demo), since one
real OctoPrint is a process of ~100 MB. Many simulated ones share one event loop and
one aiohttp app: each listens on a port of its own (a real OctoPrint is a host of its
own) and the handler finds its printer by the port a request came in on.

It follows OctoPrint's public API: ``X-Api-Key`` on every request (403 when unknown),
``POST /api/login`` with ``passive`` (user name and session), the raw websocket
``/sockjs/websocket`` (``connected``; then ``{"auth": "name:session"}`` → ``history``,
``current`` every 0.5 s × ``throttle``, ``event`` messages, ``subscribe`` with a log
filter, ``reauthRequired`` for an unknown session), ``/api/connection``,
``/api/files/local`` (multipart upload; select and print), ``/api/job`` and
``/api/printer/command`` (``M112`` and the virtual printer's ``!!DEBUG:`` faults).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
from typing import Any

from aiohttp import WSMsgType, web

from .octoprint_printer import Refused, SimOctoPrinter

VERSION = {"api": "0.1", "server": "1.11.8", "text": "OctoPrint 1.11.8 (simulated)"}
USER = "farmhand"
_NO_PERMISSION = ("You don't have the permission to access the requested resource. "
                  "It is either read-protected or not readable by the server.")


class SimOctoPrint:
    """One simulated OctoPrint: its printer, its keys and its sessions."""

    def __init__(self, api_key: str, *, seconds_per_line: float = 0.003, connected: bool = True) -> None:
        self.api_key = api_key
        self.printer = SimOctoPrinter(seconds_per_line=seconds_per_line)
        if connected:
            self.printer.connect()
        self.sessions: set[str] = set()
        self.connections: set[asyncio.BaseTransport] = set()
        """Its clients' connections (keep-alive and push sockets), dropped when it goes off the network."""
        self.port = 0
        self._sock: socket.socket | None = None
        self._site: web.SockSite | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class OctoPrintFarm:
    """Many simulated OctoPrints served from one aiohttp app: ``add()`` one, ``go_offline()``, ``close()``."""

    def __init__(self) -> None:
        self.app = web.Application(client_max_size=256 * 1024 * 1024)
        self.by_port: dict[int, SimOctoPrint] = {}
        self._runner = web.AppRunner(self.app, access_log=None)
        self._setup = False
        routes = [web.get("/api/version", self._version), web.post("/api/login", self._login),
                  web.get("/api/connection", self._connection), web.post("/api/connection", self._connect),
                  web.post("/api/files/local", self._upload), web.get("/api/files/local/{name}", self._file),
                  web.post("/api/files/local/{name}", self._select), web.get("/api/job", self._job),
                  web.post("/api/job", self._job_command), web.post("/api/printer/command", self._command),
                  web.get("/sockjs/websocket", self._socket)]
        self.app.add_routes(routes)
        self.app.middlewares.append(self._authorised)

    async def add(self, api_key: str, **kw: Any) -> SimOctoPrint:
        if not self._setup:
            await self._runner.setup()
            self._setup = True
        sim = SimOctoPrint(api_key, **kw)
        await self.go_online(sim)
        return sim

    async def go_online(self, sim: SimOctoPrint) -> None:
        """Listen (again, on the same port): the host is back on the network."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", sim.port))
        sim.port = sock.getsockname()[1]
        sim._sock, sim._site = sock, web.SockSite(self._runner, sock)
        await sim._site.start()
        self.by_port[sim.port] = sim

    async def go_offline(self, sim: SimOctoPrint) -> None:
        """The host drops off the network: its listener and connections go; the print goes on."""
        if sim._site is not None:
            await sim._site.stop()
            sim._site = None
        for transport in list(sim.connections):
            transport.abort()  # type: ignore[attr-defined]
        sim.connections.clear()

    async def close(self) -> None:
        if self._setup:
            await self._runner.cleanup()

    # ---------------------------------------------------------------- plumbing

    def _sim(self, request: web.Request) -> SimOctoPrint:
        return self.by_port[request.transport.get_extra_info("sockname")[1]]  # type: ignore[union-attr]

    @web.middleware
    async def _authorised(self, request: web.Request, handler: Any) -> web.StreamResponse:
        sim = self._sim(request)
        if request.transport is not None and request.transport not in sim.connections:
            sim.connections = {t for t in sim.connections if not t.is_closing()} | {request.transport}
        if request.path != "/sockjs/websocket" and request.headers.get("X-Api-Key") != sim.api_key:
            return web.json_response({"error": _NO_PERMISSION}, status=403)
        try:
            return await handler(request)
        except Refused as exc:
            return web.json_response({"error": exc.text}, status=exc.status)

    # ---------------------------------------------------------------- REST

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response(VERSION)

    async def _login(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not body.get("passive"):
            raise Refused(400, "only passive logins with an API key are simulated")
        session = secrets.token_hex(32)
        self._sim(request).sessions.add(session)
        return web.json_response({"name": USER, "session": session, "active": True, "admin": True, "user": True,
                                  "_login_mechanism": "apikey", "groups": ["admins"]})

    async def _connection(self, request: web.Request) -> web.Response:
        printer = self._sim(request).printer
        state = printer.state()["text"]
        return web.json_response({"current": {"state": "Closed" if state.startswith("Offline") else state,
                                              "port": "VIRTUAL", "baudrate": 115200, "printerProfile": "_default"},
                                  "options": {"ports": ["VIRTUAL"], "baudrates": [115200],
                                              "portPreference": "VIRTUAL", "printerProfiles": [{"id": "_default"}]}})

    async def _connect(self, request: web.Request) -> web.Response:
        printer = self._sim(request).printer
        match (await request.json()).get("command"):
            case "connect":
                printer.connect()
            case "disconnect":
                printer.disconnect()
            case other:
                raise Refused(400, f"Unknown command: {other}")
        return web.Response(status=204)

    async def _upload(self, request: web.Request) -> web.Response:
        sim = self._sim(request)
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            raise Refused(400, "No file included")
        stored = sim.printer.store(upload.filename, upload.file.read())
        if str(form.get("print", "false")).lower() == "true":
            sim.printer.start(stored.name)
        return web.json_response({"done": True, "effectivePrint": False, "effectiveSelect": False,
                                  "files": {"local": stored.describe(sim.url)}}, status=201)

    async def _file(self, request: web.Request) -> web.Response:
        sim = self._sim(request)
        file = sim.printer.files.get(request.match_info["name"])
        if file is None:
            raise Refused(404, f"File not found on 'local': {request.match_info['name']}")
        return web.json_response(file.describe(sim.url))

    async def _select(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("command") != "select":
            raise Refused(400, f"Unknown command: {body.get('command')}")
        if body.get("print"):
            self._sim(request).printer.start(request.match_info["name"])
        return web.Response(status=204)

    async def _job(self, request: web.Request) -> web.Response:
        sim = self._sim(request)
        snapshot = sim.printer.snapshot(sim.url)
        return web.json_response({"job": snapshot["job"], "progress": snapshot["progress"],
                                  "state": snapshot["state"]["text"]})

    async def _job_command(self, request: web.Request) -> web.Response:
        printer = self._sim(request).printer
        body = await request.json()
        match body.get("command"), body.get("action"):
            case "pause", "pause":
                printer.pause()
            case "pause", "resume":
                printer.resume()
            case "cancel", _:
                printer.cancel()
            case "start", _:
                if printer.selected is None:
                    raise Refused(409, "Printer is not operational or no file selected")
                printer.start(printer.selected.name)
            case other:
                raise Refused(400, f"Unknown command: {other}")
        return web.Response(status=204)

    async def _command(self, request: web.Request) -> web.Response:
        body = await request.json()
        lines = body.get("commands") or ([body["command"]] if body.get("command") else [])
        for line in lines:
            self._sim(request).printer.command(str(line))
        return web.Response(status=204)

    # ---------------------------------------------------------------- the push socket

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        sim = self._sim(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"connected": {"version": VERSION["server"], "display_version": VERSION["server"],
                                          "branch": None, "online": False, "debug": False, "safe_mode": None,
                                          "permissions": []}})
        pusher = _Pusher(sim, ws)
        sim.printer.listeners.append(pusher.event)
        task = asyncio.create_task(pusher.run())
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    pusher.told(json.loads(message.data))
        finally:
            sim.printer.listeners.remove(pusher.event)
            task.cancel()
        return ws


class _Pusher:
    """One client's socket: state every 0.5 s × its throttle once authenticated, events as they happen."""

    def __init__(self, sim: SimOctoPrint, ws: web.WebSocketResponse) -> None:
        self.sim, self.ws = sim, ws
        self.authed = False
        self.throttle = 1
        self.log_filter: re.Pattern[str] | None = None
        self.events: set[str] | None = None
        self.read_logs = sim.printer.log_start + len(sim.printer.logs)
        self.wake = asyncio.Event()
        self.history = False

    def told(self, body: dict[str, Any]) -> None:
        if "auth" in body:
            self.authed = str(body["auth"]).partition(":")[2] in self.sim.sessions
            if not self.authed:
                asyncio.ensure_future(self.ws.send_json({"reauthRequired": {"reason": "stale"}}))
            self.history = True
        elif "throttle" in body:
            self.throttle = max(1, int(body["throttle"]))
        elif "subscribe" in body:
            state = body["subscribe"].get("state") or {}
            logs = state.get("logs", True) if isinstance(state, dict) else bool(state)
            self.log_filter = re.compile(logs) if isinstance(logs, str) else (None if logs else re.compile(r"$^"))
            events = body["subscribe"].get("events", True)
            self.events = set(events) if isinstance(events, list) else None
        self.wake.set()

    def event(self, kind: str, payload: dict[str, Any] | None) -> None:
        if self.authed and (self.events is None or kind in self.events) and not self.ws.closed:
            asyncio.ensure_future(self.ws.send_json({"event": {"type": kind, "payload": payload}}))
            self.wake.set()  # a state change goes out with the event, as OctoPrint's does

    async def run(self) -> None:
        while not self.ws.closed:
            try:
                async with asyncio.timeout(0.5 * self.throttle):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()
            if not self.authed:
                continue
            printer = self.sim.printer
            body = printer.snapshot(self.sim.url)
            start = max(self.read_logs - printer.log_start, 0)
            self.read_logs = printer.log_start + len(printer.logs)
            body["logs"] = [line for line in printer.logs[start:]
                            if self.log_filter is None or self.log_filter.search(line)]
            kind = "history" if self.history else "current"
            self.history = False
            await self.ws.send_json({kind: body})
