"""How a component declares its HTTP operations: one ``Op`` per route, with its models.

``RouteTable.routes()`` gives aiohttp its route definitions and the web
component's OpenAPI document lists every ``Op`` with its query, body and
response models.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    handler: Handler
    summary: str = ""
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_type: str = "application/json"  # or e.g. application/octet-stream for uploads
    response: type[BaseModel] | None = None
    status: int = 200
    response_type: str = "application/json"
    tags: tuple[str, ...] = ()


@dataclass
class RouteTable:
    ops: list[Op] = field(default_factory=list)

    def add(self, method: str, path: str, handler: Handler, **doc: Any) -> None:
        self.ops.append(Op(method.upper(), path, handler, **doc))

    def extend(self, ops: Iterable[Op]) -> None:
        self.ops.extend(ops)

    def routes(self) -> list[web.RouteDef]:
        return [web.route(op.method, op.path, op.handler) for op in self.ops]
