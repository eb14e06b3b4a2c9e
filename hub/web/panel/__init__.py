"""The operator panel: static HTML, CSS and JavaScript modules served by the hub (no build step)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"


class Panel:
    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/", self.home),
            web.get("/panel", self.home),
            web.get("/panel/", self.page("index.html")),
            web.get("/api/docs", self.page("docs.html")),
            web.static("/panel/static", STATIC, append_version=False),
        ]

    async def home(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/panel/")

    @staticmethod
    def page(name: str):  # type: ignore[no-untyped-def]
        async def serve(request: web.Request) -> web.FileResponse:
            return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})
        return serve
