"""``Documents``: the HTTP front door of quotes, travellers, labels and exports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from ..api import enum_query
from ..costing import Costs
from ..file_analysis import FileAnalyses
from ..openapi import Op
from ..orders import Orders
from ..schemas import Items
from ..store import Store
from ..webkit import body, respond, row_id
from .config import DocumentsConfig
from .quote_pdf import quote_pdf
from .quotes import QuoteBook
from .schemas import Quote, QuoteCreate, QuoteListQuery, QuoteStatus
from .thumbnails import Thumbnails


def pdf_response(data: bytes, name: str, download: bool) -> web.Response:
    """``download``: save-as (attachment); otherwise the browser shows it (inline)."""
    disposition = "attachment" if download else "inline"
    return web.Response(body=data, content_type="application/pdf",
                        headers={"Content-Disposition": f'{disposition}; filename="{name}"'})


def wants_download(request: web.Request) -> bool:
    return request.query.get("download", "").lower() in ("1", "true", "yes")


class Documents:
    def __init__(self, store: Store, costs: Costs, orders: Orders, analyses: FileAnalyses, config: DocumentsConfig,
                 public_url: Callable[[], str]) -> None:
        self.store = store
        self.config = config
        self.public_url = public_url
        self.quotes = QuoteBook(store, costs, orders, config)
        self.thumbnails = Thumbnails(analyses)

    async def quote_pdf(self, quote_id: int) -> tuple[Quote, bytes]:
        quote = self.quotes.get(quote_id)
        pictures = {x.file_sha256: await self.thumbnails.png(x.file_sha256) for x in quote.lines}
        return quote, await asyncio.to_thread(quote_pdf, quote, self.config, pictures)

    def ops(self) -> list[Op]:
        async def create(request: web.Request) -> web.Response:
            return respond(await self.quotes.create(await body(request, QuoteCreate, "Invalid quote")), 201)

        async def list_quotes(request: web.Request) -> web.Response:
            quotes = self.quotes.list(enum_query(request, "status", QuoteStatus), request.query.get("customer"))
            return respond(Items[Quote](items=quotes))

        async def get(request: web.Request) -> web.Response:
            return respond(self.quotes.get(row_id(request)))

        async def send(request: web.Request) -> web.Response:
            return respond(self.quotes.send(row_id(request)))

        async def accept(request: web.Request) -> web.Response:
            return respond(await self.quotes.accept(row_id(request)))

        async def reject(request: web.Request) -> web.Response:
            return respond(self.quotes.reject(row_id(request)))

        async def pdf(request: web.Request) -> web.Response:
            quote, data = await self.quote_pdf(row_id(request))
            return pdf_response(data, f"{quote.number}.pdf", wants_download(request))

        base, tags = "/api/v1/quotes", ("quotes",)
        return [
            Op("POST", base + "/drafts", create, body=QuoteCreate, response=Quote, status=201, tags=tags,
               summary="Price and store a quote (a draft, numbered Q-YEAR-NNNN); POST /api/v1/quotes only prices"),
            Op("GET", base, list_quotes, query=QuoteListQuery, response=Items[Quote], tags=tags,
               summary="Stored quotes (open ones past their validity are expired first)"),
            Op("GET", base + "/{id}", get, response=Quote, tags=tags, summary="One stored quote"),
            Op("POST", base + "/{id}/send", send, response=Quote, tags=tags, summary="Mark a quote sent"),
            Op("POST", base + "/{id}/accept", accept, response=Quote, tags=tags,
               summary="The customer accepted: the quote becomes an order with the same lines and prices"),
            Op("POST", base + "/{id}/reject", reject, response=Quote, tags=tags, summary="The customer declined"),
            Op("GET", base + "/{id}/pdf", pdf, response_type="application/pdf", tags=tags,
               summary="The quote as a customer-ready PDF (?download=1: as an attachment)"),
        ]
