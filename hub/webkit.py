"""Small helpers the hub's feature modules share for their HTTP routes."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from .api import body, path_id

__all__ = ["body", "respond", "row_id"]


def respond(value: BaseModel | dict[str, Any] | list[Any], status: int = 200) -> web.Response:
    if isinstance(value, BaseModel):
        text = value.model_dump_json()
    else:
        text = json.dumps(value, default=lambda v: v.model_dump(mode="json"))
    return web.Response(status=status, text=text, content_type="application/json")


def row_id(request: web.Request, key: str = "id") -> int:
    return path_id(request, key=key)
