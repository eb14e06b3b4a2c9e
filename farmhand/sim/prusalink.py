"""A PrusaLink simulator: the v1 HTTP API of Prusa's printers, many printers in one aiohttp app.

PrusaLink is the local API of Prusa's Buddy firmware (MK4, XL, MINI) and of the
Pi-based PrusaLink. Printer firmware cannot run here, so this follows Prusa's
published OpenAPI (Prusa-Link-Web ``spec/openapi.yaml``) and the firmware's
HTTP digest login as Buddy does it: every request without credentials, the
first of a session included, is answered 401 with a challenge
(``Digest realm="Printer API", nonce="…", stale=false``); a nonce older than
``nonce_ttl_s`` is answered 401 with ``stale=true``; wrong credentials are 401
with ``stale=false``. Older builds also take ``X-Api-Key`` (wrong: 401 with
``WWW-Authenticate: ApiKey``).

Each simulated printer listens on a port of its own (a real printer is a host
of its own), but all share one app and one event loop: the handler finds its
printer by the port the request came in on. ``go_offline`` drops a printer's
connections and stops its listener, as a pulled network cable would;
``go_online`` brings it back on the same port with its state intact.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import web

from agent.devices.prusalink_auth import parse_auth_params

from .prusalink_printer import Refused, SimPrinter

REALM = "Printer API"
PRINTER = web.RequestKey("printer", SimPrinter)
_HANDLER = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - HTTP digest is MD5 by definition


class _Nonces:
    """Nonces this printer issued, with when: one older than the TTL is stale."""

    def __init__(self) -> None:
        self._issued: dict[str, float] = {}

    def new(self) -> str:
        now = time.monotonic()
        if len(self._issued) > 256:
            oldest = sorted(self._issued.items(), key=lambda kv: kv[1])[:128]
            for nonce, _ in oldest:
                del self._issued[nonce]
        nonce = secrets.token_hex(8)
        self._issued[nonce] = now
        return nonce

    def fresh(self, nonce: str, ttl_s: float) -> bool:
        issued = self._issued.get(nonce)
        return issued is not None and time.monotonic() - issued <= ttl_s


def _refusal(request: web.Request, status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error the way the spec gives it: JSON (title, text) when asked for, plain text otherwise."""
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"title": HTTPStatus(status).phrase, "text": text}, status=status, headers=headers)
    return web.Response(status=status, text=f"{status}: {text}", headers=headers)


def _flag(request: web.Request, name: str) -> bool:
    """An RFC 8941 boolean header (``?1`` / ``?0``), as Print-After-Upload and Overwrite are."""
    return request.headers.get(name, "?0").strip() == "?1"


class PrusaLinkSim:
    """Serves any number of simulated printers, each on a port of its own, from one aiohttp app."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.app = web.Application(middlewares=[self._dispatch], client_max_size=1 << 30)
        self._routes()
        self._runner = web.AppRunner(self.app, access_log=None)
        self._started = False
        self._by_port: dict[int, SimPrinter] = {}
        self._port_of: dict[int, int] = {}
        self._sites: dict[int, web.SockSite] = {}
        self._offline: set[int] = set()
        self._nonces: dict[int, _Nonces] = {}

    # ------------------------------------------------------------- lifecycle

    async def add(self, printer: SimPrinter, port: int = 0) -> str:
        """Start serving ``printer``; returns its base URL."""
        if not self._started:
            await self._runner.setup()
            self._started = True
        site, bound = await self._listen(port)
        self._by_port[bound] = printer
        self._port_of[id(printer)] = bound
        self._sites[bound] = site
        self._nonces[bound] = _Nonces()
        return f"http://{self.host}:{bound}"

    def url(self, printer: SimPrinter) -> str:
        return f"http://{self.host}:{self._port_of[id(printer)]}"

    async def go_offline(self, printer: SimPrinter) -> None:
        """The printer drops off the network: open connections are cut, new ones refused."""
        port = self._port_of[id(printer)]
        self._offline.add(port)
        site = self._sites.pop(port, None)
        if site is not None:
            await site.stop()

    async def go_online(self, printer: SimPrinter) -> None:
        port = self._port_of[id(printer)]
        if port in self._sites:
            return
        self._sites[port], _ = await self._listen(port)
        self._offline.discard(port)

    async def _listen(self, port: int) -> tuple[web.SockSite, int]:
        """A listener of our own socket, so a port-0 printer learns its port and comes back on it."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        site = web.SockSite(self._runner, sock)
        await site.start()
        return site, sock.getsockname()[1]

    async def close(self) -> None:
        if self._started:
            await self._runner.cleanup()
            self._started = False

    # ------------------------------------------------------------- the door

    @web.middleware
    async def _dispatch(self, request: web.Request, handler: _HANDLER) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        port = sockname[1] if sockname else None
        printer = self._by_port.get(port) if port is not None else None
        if printer is None or port in self._offline:
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPServiceUnavailable()
        refused = self._authenticate(request, printer, port)  # type: ignore[arg-type]
        if refused is not None:
            return refused
        request[PRINTER] = printer
        try:
            return await handler(request)
        except Refused as exc:
            return _refusal(request, exc.status, exc.text)

    def _authenticate(self, request: web.Request, printer: SimPrinter, port: int) -> web.Response | None:
        api_key = request.headers.get("X-Api-Key")
        if api_key is not None and printer.api_key is not None:
            if secrets.compare_digest(api_key, printer.api_key):
                return None
            printer.auth_failures += 1
            return _refusal(request, 401, "Unauthorized", {"WWW-Authenticate": "ApiKey"})
        header = request.headers.get("Authorization", "")
        nonces = self._nonces[port]
        if not header.lower().startswith("digest "):
            return self._challenge(request, printer, nonces, stale=False)
        auth = parse_auth_params(header)
        if not nonces.fresh(auth.get("nonce", ""), printer.nonce_ttl_s):
            return self._challenge(request, printer, nonces, stale=True)
        if auth.get("username") == printer.username and auth.get("realm") == REALM \
                and auth.get("uri") == request.path_qs and _digest_ok(auth, printer.password, request.method):
            return None
        printer.auth_failures += 1
        return self._challenge(request, printer, nonces, stale=False, counted=True)

    def _challenge(self, request: web.Request, printer: SimPrinter, nonces: _Nonces, *, stale: bool,
                   counted: bool = False) -> web.Response:
        if not counted:
            printer.challenges += 1
        value = f'Digest realm="{REALM}", nonce="{nonces.new()}", stale={"true" if stale else "false"}'
        return _refusal(request, 401, "Unauthorized", {"WWW-Authenticate": value})

    # ------------------------------------------------------------- the API

    def _routes(self) -> None:
        r = self.app.router
        r.add_get("/api/version", self._version)
        r.add_get("/api/v1/info", self._info)
        r.add_get("/api/v1/status", self._status)
        r.add_get("/api/v1/storage", self._storage)
        r.add_get("/api/v1/job", self._job)
        r.add_delete("/api/v1/job/{id:\\d+}", self._job_command)
        r.add_put("/api/v1/job/{id:\\d+}/{command:pause|resume}", self._job_command)
        files = "/api/v1/files/{storage}/{path:.+}"
        r.add_put(files, self._upload)
        r.add_get(files, self._file_info, allow_head=False)
        r.add_head(files, self._file_head)
        r.add_post(files, self._file_print)
        r.add_delete(files, self._file_delete)

    async def _version(self, request: web.Request) -> web.Response:
        printer: SimPrinter = request[PRINTER]
        return web.json_response({"api": "1.0.0", "version": "2.1.2", "printer": "1.0.0",
                                  "text": "PrusaLink", "firmware": printer.firmware, "hostname": printer.name,
                                  "capabilities": {"upload-by-put": True}})

    async def _info(self, request: web.Request) -> web.Response:
        printer: SimPrinter = request[PRINTER]
        return web.json_response({"name": printer.name, "location": "", "farm_mode": False,
                                  "nozzle_diameter": 0.4, "min_extrusion_temp": 170, "serial": printer.serial,
                                  "hostname": printer.name, "sd_ready": False, "mmu": False})

    async def _status(self, request: web.Request) -> web.Response:
        printer: SimPrinter = request[PRINTER]
        body = json.dumps(printer.status(), sort_keys=True)
        if not printer.status_etag:
            return web.Response(text=body, content_type="application/json")
        etag = f'W/"{hashlib.sha1(body.encode()).hexdigest()[:16]}"'  # noqa: S324 - a cache tag
        if request.headers.get("If-None-Match") == etag:
            printer.status_not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(text=body, content_type="application/json", headers={"ETag": etag})

    async def _storage(self, request: web.Request) -> web.Response:
        printer: SimPrinter = request[PRINTER]
        return web.json_response({"storage_list": [{
            "name": printer.storage.upper(), "type": "USB" if printer.storage == "usb" else "LOCAL",
            "path": f"/{printer.storage}", "available": True, "read_only": False,
            "free_space": 1 << 33, "total_space": 1 << 34}]})

    async def _job(self, request: web.Request) -> web.Response:
        job = request[PRINTER].job_info()
        return web.Response(status=204) if job is None else web.json_response(job)

    async def _job_command(self, request: web.Request) -> web.Response:
        printer: SimPrinter = request[PRINTER]
        job_id = int(request.match_info["id"])
        command = request.match_info.get("command")
        {"pause": printer.pause, "resume": printer.resume, None: printer.stop}[command](job_id)
        return web.Response(status=204)

    async def _upload(self, request: web.Request) -> web.Response:
        printer: SimPrinter = request[PRINTER]
        storage, path = request.match_info["storage"], request.match_info["path"]
        if request.content_length is None:
            return _refusal(request, 411, "Length Required")
        print_after = _flag(request, "Print-After-Upload")
        printer.check_upload(storage, path, overwrite=_flag(request, "Overwrite"), print_after=print_after)
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_chunked(1 << 16):
            digest.update(chunk)
            size += len(chunk)
        if size != request.content_length:
            return _refusal(request, 400, f"Upload incomplete: {size} of {request.content_length} bytes")
        printer.store(storage, path, size, digest.hexdigest(), overwrite=_flag(request, "Overwrite"))
        if print_after:
            printer.start(storage, path)
        return web.Response(status=201)

    async def _file_info(self, request: web.Request) -> web.Response:
        printer: SimPrinter = request[PRINTER]
        storage, path = request.match_info["storage"], request.match_info["path"]
        found = printer.files.get(f"{storage}/{path}")
        if found is None:
            raise Refused(404, "File not found")
        return web.json_response({"name": path.rsplit("/", 1)[-1], "display_name": path.rsplit("/", 1)[-1],
                                  "read_only": False, "size": found.size, "type": "PRINT_FILE",
                                  "m_timestamp": found.m_timestamp})

    async def _file_head(self, request: web.Request) -> web.Response:
        printer: SimPrinter = request[PRINTER]
        storage, path = request.match_info["storage"], request.match_info["path"]
        if f"{storage}/{path}" not in printer.files:
            return web.Response(status=404)
        job = printer.job
        printing = job is not None and (job.storage, job.path) == (storage, path) and \
            job.state in ("PRINTING", "PAUSED")
        return web.Response(status=200, headers={"Read-Only": "false", "Currently-Printed": str(printing).lower()})

    async def _file_print(self, request: web.Request) -> web.Response:
        request[PRINTER].start(request.match_info["storage"], request.match_info["path"])
        return web.Response(status=204)

    async def _file_delete(self, request: web.Request) -> web.Response:
        request[PRINTER].delete(request.match_info["storage"], request.match_info["path"])
        return web.Response(status=204)


def _digest_ok(auth: dict[str, str], password: str, method: str) -> bool:
    """RFC 7616 MD5 digest, with or without qop=auth (Buddy sends no qop; a client may still use it)."""
    ha1 = _md5(f"{auth.get('username')}:{REALM}:{password}")
    ha2 = _md5(f"{method}:{auth.get('uri')}")
    if auth.get("qop") == "auth":
        expected = _md5(f"{ha1}:{auth.get('nonce')}:{auth.get('nc')}:{auth.get('cnonce')}:auth:{ha2}")
    else:
        expected = _md5(f"{ha1}:{auth.get('nonce')}:{ha2}")
    return secrets.compare_digest(expected, auth.get("response", ""))
