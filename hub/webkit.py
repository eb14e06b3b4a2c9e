"""Small helpers the hub's feature modules share for their HTTP routes."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from protocol.codec import describe

from .api import ApiProblem, path_id

M = TypeVar("M", bound=BaseModel)


async def body(request: web.Request, model: type[M]) -> M:
    """The request's JSON body as ``model``; a 422 problem that names the bad field otherwise."""
    raw = await request.read()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise ApiProblem(422, "Invalid request", describe(exc)) from None


def respond(value: BaseModel | dict[str, Any] | list[Any], status: int = 200) -> web.Response:
    if isinstance(value, BaseModel):
        text = value.model_dump_json()
    else:
        text = json.dumps(value, default=lambda v: v.model_dump(mode="json"))
    return web.Response(status=status, text=text, content_type="application/json")


def row_id(request: web.Request, key: str = "id") -> int:
    return path_id(request, key=key)
