"""The one shape every part of the hub has (see ``hub/README.md``).

A component's constructor receives everything it uses (the store, the MQTT
link, the ingest to subscribe to, its config section, the public interface of
the components it needs), so reading the constructor tells its whole world;
nothing is assigned onto it from outside afterwards. It declares

- ``tables``: its SQL, by the hub-wide schema version each piece belongs to
  (``Store`` applies every component's pieces of a version in one transaction);
- ``ops()``: its HTTP operations, each an ``Op`` with request and response models;
- the message types it handles, by calling ``ingest.subscribe``/``observe`` in
  its constructor;

and may start and stop background work and report counters for ``/healthz``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from hub.api import Op
from hub.tasks import stop_tasks

Middleware = Callable[[web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Tables:
    """SQL of one hub-wide schema version. Released versions are never edited: a change is a new version."""

    version: int
    sql: str


@dataclass
class Addresses:
    """Where the hub is reachable; the web component fills them in when its HTTP server is bound."""

    http_url: str = ""
    public_url: str = ""

    def file_url(self, sha256: str) -> str:
        return f"{self.public_url}/api/v1/files/{sha256}"


class Component:
    """Base of the hub's components; every method has a do-nothing default."""

    name: ClassVar[str]
    tables: ClassVar[tuple[Tables, ...]] = ()

    def ops(self) -> list[Op]:
        return []

    def middlewares(self) -> list[Middleware]:
        """aiohttp middlewares this component wraps every request in (the access policy, the live feed's)."""
        return []

    def install(self, app: web.Application) -> None:
        """Anything else the HTTP application needs from this component (response headers)."""

    async def start(self) -> None:
        """Called in the order of ``hub.app.COMPONENTS``, after every component is built."""

    async def stop(self) -> None:
        """Called in reverse order; must be safe when ``start`` did not run or failed part-way."""

    def counters(self) -> dict[str, dict[str, int]]:
        """Sections of ``/healthz``'s counters this component contributes to."""
        return {}

    def run_loop(self, loop: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``loop`` (a scheduler, a pruner…) until ``stop_loops``."""
        self.__dict__.setdefault("_loops", []).append(asyncio.create_task(loop, name=f"hub:{name}"))

    async def stop_loops(self) -> None:
        await stop_tasks(*self.__dict__.get("_loops", []))
        self._loops = []
