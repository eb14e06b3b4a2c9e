"""``Documents``: the HTTP front door of quotes, travellers, labels and exports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ..api import ApiProblem, enum_query
from ..costing import Costs
from ..file_analysis import FileAnalyses
from ..openapi import Op
from ..orders import Orders
from ..reports import Reports
from ..schemas import Items
from ..store import Store
from ..webkit import body, respond, row_id
from .config import DocumentsConfig
from .exports import Exports
from .label_sources import LabelSources
from .labels import Label, LabelSize, labels_pdf, labels_png
from .links import PanelLinks
from .quote_pdf import quote_pdf
from .quotes import QuoteBook
from .schemas import Quote, QuoteCreate, QuoteListQuery, QuoteStatus
from .thumbnails import Thumbnails
from .travellers import Travellers, sheet_pdf


def pdf_response(data: bytes, name: str, download: bool) -> web.Response:
    """``download``: save-as (attachment); otherwise the browser shows it (inline)."""
    disposition = "attachment" if download else "inline"
    return web.Response(body=data, content_type="application/pdf",
                        headers={"Content-Disposition": f'{disposition}; filename="{name}"'})


def wants_download(request: web.Request) -> bool:
    return request.query.get("download", "").lower() in ("1", "true", "yes")


class LabelQuery(BaseModel):
    size: LabelSize = LabelSize.TAPE_62
    format: Literal["pdf", "png"] = "pdf"
    download: bool = False


def label_query(request: web.Request) -> LabelQuery:
    try:
        return LabelQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ApiProblem(422, "Invalid label query", problems) from None


class Documents:
    def __init__(self, store: Store, costs: Costs, orders: Orders, analyses: FileAnalyses, reports: Reports,
                 config: DocumentsConfig, public_url: Callable[[], str]) -> None:
        self.store = store
        self.config = config
        self.public_url = public_url
        self.quotes = QuoteBook(store, costs, orders, config)
        self.thumbnails = Thumbnails(analyses)
        self.links = PanelLinks(lambda: config.panel_url or public_url())
        self.labels = LabelSources(store, self.links)
        self.travellers = Travellers(store, self.links, config)
        self.exports = Exports(store, reports, orders.list)

    async def quote_pdf(self, quote_id: int) -> tuple[Quote, bytes]:
        quote = self.quotes.get(quote_id)
        pictures = {x.file_sha256: await self.thumbnails.png(x.file_sha256) for x in quote.lines}
        return quote, await asyncio.to_thread(quote_pdf, quote, self.config, pictures)

    async def _labels(self, request: web.Request, labels: list[Label], name: str) -> web.Response:
        q = label_query(request)
        if not labels:
            raise ApiProblem(404, "No labels", f"there is nothing to label: {name} is empty")
        file = f"labels-{name}-{q.size.value}.{q.format}"
        if q.format == "png":
            data = await asyncio.to_thread(labels_png, labels, q.size)
            return web.Response(body=data, content_type="image/png", headers={
                "Content-Disposition": f'{"attachment" if q.download else "inline"}; filename="{file}"'})
        return pdf_response(await asyncio.to_thread(labels_pdf, labels, q.size, f"Labels: {name}"), file, q.download)

    def label_ops(self) -> list[Op]:
        async def spool(request: web.Request) -> web.Response:
            return await self._labels(request, self.labels.spool(row_id(request)), f"spool-{row_id(request)}")

        async def spools(request: web.Request) -> web.Response:
            return await self._labels(request, self.labels.spools(), "spools")

        async def order(request: web.Request) -> web.Response:
            return await self._labels(request, self.labels.order(row_id(request)), f"order-{row_id(request)}")

        async def device(request: web.Request) -> web.Response:
            node, dev = request.match_info["node"], request.match_info["device"]
            return await self._labels(request, self.labels.device(node, dev), f"{node}-{dev}")

        async def printers(request: web.Request) -> web.Response:
            return await self._labels(request, self.labels.printers(), "printers")

        base, tags, kind = "/api/v1/labels", ("labels",), "application/pdf"
        doc = dict(query=LabelQuery, response_type=kind, tags=tags)
        return [
            Op("GET", base + "/spools/{id}", spool, summary="A spool's label: material, colour, grams left, lot, QR"
                                                            " to its panel page", **doc),
            Op("GET", base + "/spools", spools, summary="Labels for every spool in stock", **doc),
            Op("GET", base + "/orders/{id}", order, summary="A box label for every copy of every item of an order",
               **doc),
            Op("GET", base + "/devices/{node}/{device}", device, summary="A printer's label: QR to its panel page",
               **doc),
            Op("GET", base + "/devices", printers, summary="Labels for every printer", **doc),
        ]

    def traveller_ops(self) -> list[Op]:
        async def job(request: web.Request) -> web.Response:
            sheet = self.travellers.job(row_id(request))
            data = await asyncio.to_thread(sheet_pdf, sheet, self.config)
            return pdf_response(data, f"job-{row_id(request)}-traveller.pdf", wants_download(request))

        async def order(request: web.Request) -> web.Response:
            sheet = self.travellers.order(row_id(request))
            data = await asyncio.to_thread(sheet_pdf, sheet, self.config)
            return pdf_response(data, f"order-{row_id(request)}-production-sheet.pdf", wants_download(request))

        return [
            Op("GET", "/api/v1/jobs/{id}/traveller", job, response_type="application/pdf", tags=("jobs",),
               summary="The job's traveller (PDF): part, printer, spool, times, stages to sign, QR to the job"),
            Op("GET", "/api/v1/orders/{id}/sheet", order, response_type="application/pdf", tags=("orders",),
               summary="The order's production sheet (PDF): every job, stages with sign-off boxes, QR to the order"),
        ]

    def ops(self) -> list[Op]:
        return self.quote_ops() + self.label_ops() + self.traveller_ops() + self.exports.ops()

    def quote_ops(self) -> list[Op]:
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
