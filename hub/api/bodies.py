"""Reading requests and writing responses: what every component's handlers share."""

from __future__ import annotations

import json
from enum import Enum
from typing import Any, TypeVar

from aiohttp import MultipartReader, web
from pydantic import BaseModel, ValidationError

from protocol.codec import describe

from ..ids import ascii_int
from .listing import ListError, page
from .models import Items
from .problems import ApiProblem

CHUNK = 256 * 1024

M = TypeVar("M", bound=BaseModel)
E = TypeVar("E", bound=Enum)


async def body(request: web.Request, model: type[M], title: str = "Invalid request") -> M:
    """The request's JSON body as ``model`` (an empty body is ``{}``); a 422 problem naming the bad field otherwise."""
    raw = await request.read()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise ApiProblem(422, title, describe(exc)) from None


def request_key(request: web.Request) -> str | None:
    """The client's Idempotency-Key, as the services keep it apart from keys that came over MQTT."""
    key = request.headers.get("Idempotency-Key")
    return f"http:{key}" if key else None


def enum_query(request: web.Request, name: str, enum: type[E]) -> E | None:
    """Query parameter ``name`` as one of ``enum``'s values (None when absent); a 422 problem listing them otherwise."""
    raw = request.query.get(name)
    try:
        return enum(raw) if raw else None
    except ValueError:
        raise ApiProblem(422, "Invalid filter",
                         f"{name} must be one of {', '.join(e.value for e in enum)}; got {raw!r}") from None


def respond(value: BaseModel | dict[str, Any] | list[Any], status: int = 200, *,
            exclude_unset: bool = False) -> web.Response:
    """``exclude_unset``: leave out the fields the model was not given (a partial record stays partial)."""
    if isinstance(value, BaseModel):
        text = value.model_dump_json(exclude_unset=exclude_unset)
    else:
        text = json.dumps(value, default=lambda v: v.model_dump(mode="json"))
    return web.Response(status=status, text=text, content_type="application/json")


def listed(request: web.Request, items: list, filterable: tuple[str, ...] = ()) -> Items:  # type: ignore[type-arg]
    """A page of a list, filtered by the query (see ``listing``)."""
    try:
        chunk, cursor = page(request.query, items, filterable)
    except ListError as exc:
        raise ApiProblem(422, "Invalid list query", str(exc)) from None
    return Items(items=chunk, next=cursor)


async def multipart_reader(request: web.Request) -> MultipartReader:
    """The request's multipart reader; a 422 problem when the body cannot be one."""
    try:
        return await request.multipart()
    except ValueError as exc:  # e.g. a multipart Content-Type without a boundary
        raise ApiProblem(422, "Invalid upload", f"unreadable multipart body: {exc}") from None


def path_id(request: web.Request, what: str = "", key: str = "id") -> int:
    """The integer id in the path; a 404 naming ``what`` (a job, a render job…) for anything else."""
    raw = request.match_info[key]
    value = ascii_int(raw)
    if value is None:
        title = f"{what[:1].upper()}{what[1:]} not found" if what else "Not found"
        raise ApiProblem(404, title, f"no {what or 'resource'} {raw!r}: ids are integers")
    return value


def row_id(request: web.Request, key: str = "id") -> int:
    return path_id(request, key=key)
