"""``Web``: the HTTP application every other component's operations are served by.

It binds the HTTP server first of all (its address is the default public URL
that goes into the hub's presence message and into start commands), serves
each component's ``Op``s with their middlewares, the OpenAPI document
generated from those ``Op``s, and the operator panel.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from importlib import metadata

from aiohttp import web

from hub.api import Op, etags, problems
from hub.component import Addresses, Component
from hub.config import HttpConfig

from .openapi import OpenApiDocument, openapi
from .panel import Panel
from .parser_errors import ProblemAppRunner


WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def _version() -> str:
    try:
        return metadata.version("farmhand")
    except metadata.PackageNotFoundError:
        return "0"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Web(Component):
    name = "web"

    def __init__(self, config: HttpConfig, public_url: str | None, addresses: Addresses,
                 components: Callable[[], Sequence[Component]]) -> None:
        """``components``: the hub's components, whose operations and middlewares are served (read at start)."""
        self.config = config
        self.public_url = public_url
        self.addresses = addresses
        self.components = components
        self.runner: ProblemAppRunner | None = None
        self._table: list[Op] = []

    def ops(self) -> list[Op]:
        return [Op("GET", "/api/v1/openapi.json", self.openapi_json, response=OpenApiDocument, tags=("docs",),
                   summary="This document")]

    def app(self) -> web.Application:
        """The application: problems outermost, then each component's middlewares in the hub's order."""
        parts = list(self.components())
        app = web.Application(middlewares=[problems])
        for part in parts:
            app.middlewares.extend(part.middlewares())
        app.middlewares.append(etags)
        for part in parts:
            part.install(app)
        self._table = [op for part in parts for op in part.ops()]
        app.add_routes([web.route(op.method, op.path, op.handler) for op in self._table])
        app.add_routes(Panel().routes())
        return app

    async def start(self) -> None:
        cfg = self.config
        self.runner = ProblemAppRunner(self.app(), access_log=None)
        await self.runner.setup()
        tls = cfg.tls()
        site = web.TCPSite(self.runner, cfg.host, cfg.port, ssl_context=tls)
        await site.start()
        port = self.runner.addresses[0][1]
        wildcard = cfg.host in WILDCARD_HOSTS
        scheme = "https" if tls else "http"
        self.addresses.http_url = f"{scheme}://{_url_host('127.0.0.1' if wildcard else cfg.host)}:{port}"
        self.addresses.public_url = (
            self.public_url or (f"{scheme}://{socket.getfqdn()}:{port}" if wildcard else self.addresses.http_url)
        ).rstrip("/")

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def openapi_json(self, request: web.Request) -> web.Response:
        return web.json_response(openapi(request.app, self._table, title="Farmhand hub", version=_version()))
