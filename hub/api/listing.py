"""What every list and every read of the API shares: pages, filters and ETags.

Lists take ``?limit=&cursor=`` (the cursor is an opaque offset) and equality
filters on the items' own top-level fields (``?state=printing``); the answer
carries ``next``, the cursor of the following page, or null on the last one.
Reads carry an ETag (a digest of the body), so a panel polling an unchanged
list gets a bodyless 304.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, Field

from hub.ids import ascii_int

T = TypeVar("T", bound=BaseModel)

MAX_LIMIT = 1000
PAGING = frozenset({"limit", "cursor"})


class PageQuery(BaseModel):
    limit: int = Field(100, ge=1, le=MAX_LIMIT, description="items per page")
    cursor: str | None = Field(None, description="the `next` of the previous page")


class ListError(ValueError):
    pass


def _int(raw: str, name: str, low: int, high: int) -> int:
    value = ascii_int(raw)
    if value is None or not low <= value <= high:
        raise ListError(f"{name} must be an integer from {low} to {high}; got {raw!r}")
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "value"):
        return str(value.value)
    return "" if value is None else str(value)


def page(query: dict[str, str] | Any, items: Sequence[T], filterable: Sequence[str] = ()) -> tuple[list[T], str | None]:
    """One page of ``items`` after the filters in ``query``; returns (page, next cursor)."""
    limit = _int(query.get("limit", "100"), "limit", 1, MAX_LIMIT)
    offset = _int(query.get("cursor", "0") or "0", "cursor", 0, 10**12)
    filters = {k: v for k, v in query.items() if k not in PAGING}
    unknown = sorted(set(filters) - set(filterable))
    if unknown:
        allowed = ", ".join(sorted(filterable)) or "none"
        raise ListError(f"unknown filter {', '.join(unknown)}; this list filters on: {allowed}")
    if filters:
        items = [i for i in items if all(_text(getattr(i, k)) == v for k, v in filters.items())]
    chunk = list(items[offset:offset + limit])
    return chunk, (str(offset + limit) if offset + limit < len(items) else None)


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@web.middleware
async def etags(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                ) -> web.StreamResponse:
    response = await handler(request)
    if request.method != "GET" or response.status != 200 or not isinstance(response, web.Response):
        return response
    body = response.body
    if not isinstance(body, bytes | bytearray) or "ETag" in response.headers:
        return response
    tag = etag_of(bytes(body))
    response.headers["ETag"] = tag
    # Reads can differ by who asks, and may change any moment: revalidate every time.
    response.headers.setdefault("Cache-Control", "private, no-cache")
    wanted = [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]
    if tag in wanted or "*" in wanted:
        return web.Response(status=304, headers={"ETag": tag, "Cache-Control": response.headers["Cache-Control"]})
    return response
