"""Everything the hub serves to people and scripts on top of the core API:
authentication and roles, live updates, device controls, the OpenAPI document
and its docs page, and the operator panel. ``Surface.install`` wires them into
the aiohttp application the core API built.
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Any

import structlog
from aiohttp import web

from .access import access_middleware, security_headers
from .account_api import AccountApi
from .accounts import Accounts
from .api import problem
from .console import DeviceConsole
from .device_controls import DeviceControls
from .listing import etags
from .live import Bus, LiveSocket
from .live_feed import LiveFeed
from .openapi import RouteTable, openapi
from .panel import Panel
from .render.frames import RenderFrames
from .tile_feed import TileFeed

log = structlog.get_logger("farmhand.hub.surface")


def _version() -> str:
    try:
        return metadata.version("farmhand")
    except metadata.PackageNotFoundError:
        return "0"


class Surface:
    def __init__(self, hub: Any, table: RouteTable) -> None:
        """``hub``: the ``Hub`` being started, with its store, fleet, jobs, outbox and ingest built."""
        cfg = hub.config.auth
        self.auth_config = cfg
        self.accounts = Accounts(hub.store, cfg)
        password = self.accounts.ensure_admin()
        if password is not None:
            # Shown once, on the console of whoever ran the first start; only its hash is kept.
            print(f"farmhand hub: created user {cfg.admin_user!r} with password {password} "
                  "(shown once: log in to the panel and keep it safe)", file=sys.stderr, flush=True)
        self.bus = Bus()
        self.feed = LiveFeed(self.bus, hub.fleet, hub.jobs)
        self.feed.watch_ingest(hub.ingest)
        self.feed.watch_outbox(hub.outbox)
        # The farm grid's coalesced feed (panel work, issue 19): GET /api/v1/tiles and the live topic "tiles".
        self.tiles = TileFeed(self.bus, hub.fleet)
        self.tiles.watch_ingest(hub.ingest)
        self.tiles.watch_changes()
        self.own = RouteTable()
        self.own.extend(AccountApi(self.accounts, cfg).ops())
        self.own.extend(DeviceControls(hub.store, hub.outbox, hub.jobs).ops())
        self.console = DeviceConsole(hub.store, hub.outbox, self.bus, hub.ingest)
        self.own.extend(self.console.ops())
        self.own.extend(self.tiles.ops().ops)
        self.own.extend(RenderFrames(hub.store, hub.files, self.bus, hub.ingest).ops())
        self.own.add("GET", "/api/v1/live", LiveSocket(self.bus).handle, tags=("live",),
                     summary="WebSocket of state changes; send {\"subscribe\": [\"devices\", \"jobs\", ...]}")
        self.own.add("GET", "/api/v1/openapi.json", self.openapi_json, tags=("docs",), summary="This document")
        # Other modules document their routes by adding Ops to this table.
        self.table = table
        self.table.extend(self.own.ops)
        self.panel = Panel()

    def install(self, app: web.Application) -> web.Application:
        app.middlewares.append(access_middleware(self.accounts, self.auth_config.cors_origins,
                                                 lambda d: problem(d.status, d.title, d.detail)))
        app.middlewares.append(etags)
        app.middlewares.append(self.feed.changes_middleware())
        app.on_response_prepare.append(security_headers(self.auth_config))
        app.add_routes(self.own.routes())
        app.add_routes(self.panel.routes())
        return app

    async def openapi_json(self, request: web.Request) -> web.Response:
        doc = openapi(request.app, self.table, title="Farmhand hub", version=_version())
        return web.json_response(doc)

    def counters(self) -> dict[str, int]:
        return self.bus.counters()

