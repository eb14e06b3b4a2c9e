"""Stored quotes: priced lines, a gapless number per year, and the way to an order.

Every line is priced first (slicing a mesh may take minutes); the number is
taken only afterwards, in the one synchronous transaction that writes the
quote. All writes run on the event loop's thread, so concurrent requests are
numbered one after another and a refused quote leaves no hole.

Lifecycle: draft → sent → accepted (an order with the same lines and prices)
or rejected; a draft or sent quote past its validity date is expired.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import structlog
from sqlite_utils import Database

from ..api import ApiProblem
from ..costing import Costs, Line, QuoteRequest
from ..order_schemas import OrderCreate, OrderItemIn
from ..orders import Orders
from ..store import Store, utcnow
from .config import DocumentsConfig
from .schemas import OPEN, Quote, QuoteCreate, QuoteLine, QuoteStatus

log = structlog.get_logger("farmhand.hub.documents.quotes")


def next_number(db: Database, kind: str, year: int) -> int:
    """The next number of ``kind`` in ``year``; call inside the transaction that uses it."""
    db.execute("INSERT OR IGNORE INTO document_sequences (kind, year, last) VALUES (?, ?, 0)", (kind, year))
    db.execute("UPDATE document_sequences SET last = last + 1 WHERE kind = ? AND year = ?", (kind, year))
    return db.execute("SELECT last FROM document_sequences WHERE kind = ? AND year = ?", (kind, year)).fetchone()[0]


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class QuoteBook:
    def __init__(self, store: Store, costs: Costs, orders: Orders, config: DocumentsConfig,
                 today: Callable[[], dt.date] = _today) -> None:
        self.store = store
        self.costs = costs
        self.orders = orders
        self.config = config
        self.today = today

    # ------------------------------------------------------------------ create

    async def create(self, spec: QuoteCreate) -> Quote:
        valid_until = spec.valid_until or self.today() + dt.timedelta(days=self.config.validity_days)
        if valid_until < self.today():
            raise ApiProblem(422, "Invalid quote", f"valid_until {valid_until} is in the past")
        priced = []
        for n, line in enumerate(spec.lines, start=1):
            file = self.store.one("SELECT name FROM files WHERE sha256 = ?", (line.file_sha256,))
            if file is None:
                raise ApiProblem(422, "Unknown file", f"line {n}: no file with sha256 {line.file_sha256}")
            try:
                costing = await self.costs.quote(QuoteRequest(
                    file_sha256=line.file_sha256, machine_model=line.machine_model, material=line.material,
                    copies=line.copies, quality=line.quality))
            except ApiProblem as exc:
                raise ApiProblem(exc.status, exc.title, f"line {n}: {exc.detail}") from None
            priced.append((line, line.description or file["name"], costing))
        currency = self.costs.model().currency
        vat_pct = spec.vat_pct if spec.vat_pct is not None else self.config.vat_pct
        now = utcnow()
        with self.store.transaction() as db:
            year = int(now[:4])
            number = f"Q-{year}-{next_number(db, 'quote', year):04d}"
            quote_id = db.execute(
                "INSERT INTO quotes (number, status, customer, customer_address, reference, notes, currency, vat_pct,"
                " valid_until, stages, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (number, QuoteStatus.DRAFT.value, spec.customer, json.dumps(spec.customer_address), spec.reference,
                 spec.notes, currency, vat_pct, valid_until.isoformat(), json.dumps(spec.stages), now)).lastrowid
            for position, (line, description, c) in enumerate(priced, start=1):
                db.execute(
                    "INSERT INTO quote_lines (quote_id, position, file_sha256, description, copies, material, color,"
                    " machine_model, quality, kind, grams, hours, cost, total, breakdown)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (quote_id, position, line.file_sha256, description, line.copies, c.material, line.color,
                     line.machine_model, line.quality, c.kind, c.grams, c.hours, c.cost, c.price,
                     json.dumps([x.model_dump() for x in c.lines])))
        assert quote_id is not None
        log.info("quote_created", quote_id=quote_id, number=number, customer=spec.customer, lines=len(priced))
        return self.get(quote_id)

    # ------------------------------------------------------------------ read

    def expire_due(self) -> int:
        """Mark open quotes past their validity date expired; returns how many."""
        cur = self.store.db.execute(
            "UPDATE quotes SET status = ?, decided_at = ? WHERE status IN (?, ?) AND valid_until < ?",
            (QuoteStatus.EXPIRED.value, utcnow(), *(s.value for s in OPEN), self.today().isoformat()))
        if cur.rowcount:
            log.info("quotes_expired", count=cur.rowcount)
        return cur.rowcount

    def get(self, quote_id: int) -> Quote:
        self.expire_due()
        row = self.store.one("SELECT * FROM quotes WHERE id = ?", (quote_id,))
        if row is None:
            raise ApiProblem(404, "Quote not found", f"no quote {quote_id}")
        return self._view(row)

    def list(self, status: QuoteStatus | None = None, customer: str | None = None) -> list[Quote]:
        self.expire_due()
        rows = self.store.all("SELECT * FROM quotes ORDER BY id")
        return [self._view(r) for r in rows
                if (status is None or r["status"] == status.value) and (customer is None or r["customer"] == customer)]

    def _view(self, row: dict[str, Any]) -> Quote:
        lines = [QuoteLine(
            position=x["position"], file_sha256=x["file_sha256"], description=x["description"], copies=x["copies"],
            material=x["material"], color=x["color"], machine_model=x["machine_model"], quality=x["quality"],
            kind=x["kind"], grams=x["grams"], hours=x["hours"], cost=x["cost"], total=x["total"],
            unit_price=round(x["total"] / x["copies"], 2), breakdown=[Line(**b) for b in json.loads(x["breakdown"])])
            for x in self.store.all("SELECT * FROM quote_lines WHERE quote_id = ? ORDER BY position", (row["id"],))]
        net = round(sum(x.total for x in lines), 2)
        vat = round(net * row["vat_pct"] / 100, 2)
        return Quote(id=row["id"], number=row["number"], status=row["status"], customer=row["customer"],
                     customer_address=json.loads(row["customer_address"]), reference=row["reference"],
                     notes=row["notes"], currency=row["currency"], net=net, vat_pct=row["vat_pct"], vat=vat,
                     total=round(net + vat, 2), valid_until=dt.date.fromisoformat(row["valid_until"]),
                     stages=json.loads(row["stages"]), created_at=row["created_at"], sent_at=row["sent_at"],
                     decided_at=row["decided_at"], order_id=row["order_id"], lines=lines)

    # ------------------------------------------------------------------ lifecycle

    def _move(self, quote_id: int, allowed: tuple[QuoteStatus, ...], to: QuoteStatus, **columns: Any) -> Quote:
        quote = self.get(quote_id)
        if quote.status not in allowed:
            raise ApiProblem(409, "Quote state conflict",
                             f"quote {quote.number} is {quote.status.value}: it cannot become {to.value}")
        sets = ", ".join(f"{k} = ?" for k in ("status", *columns))
        self.store.db.execute(f"UPDATE quotes SET {sets} WHERE id = ?", (to.value, *columns.values(), quote_id))
        log.info("quote_" + to.value, quote_id=quote_id, number=quote.number)
        return self.get(quote_id)

    def send(self, quote_id: int) -> Quote:
        return self._move(quote_id, (QuoteStatus.DRAFT, QuoteStatus.SENT), QuoteStatus.SENT, sent_at=utcnow())

    def reject(self, quote_id: int) -> Quote:
        return self._move(quote_id, OPEN, QuoteStatus.REJECTED, decided_at=utcnow())

    async def accept(self, quote_id: int) -> Quote:
        """The quote becomes an order with its lines, copies and prices; taken once even if asked twice."""
        quote = self._move(quote_id, OPEN, QuoteStatus.ACCEPTED, decided_at=utcnow())
        try:
            order = await self.orders.create(OrderCreate(
                customer=quote.customer, reference=quote.number, notes=quote.notes, price=quote.net,
                stages=quote.stages, items=[OrderItemIn(
                    file_sha256=x.file_sha256, copies=x.copies, material=x.material, color=x.color,
                    machine_model=x.machine_model, quality=x.quality or "0.20mm") for x in quote.lines]))
        except BaseException:
            self.store.db.execute("UPDATE quotes SET status = ?, decided_at = NULL WHERE id = ?",
                                  (QuoteStatus.SENT.value if quote.sent_at else QuoteStatus.DRAFT.value, quote_id))
            raise
        with self.store.transaction() as db:
            # The order carries the quoted prices, not a fresh quote made at acceptance.
            for item, line in zip(order.items, quote.lines, strict=True):
                db.execute("UPDATE order_items SET quoted_cost = ?, quoted_price = ? WHERE id = ?",
                           (line.cost, line.total, item.id))
            db.execute("UPDATE quotes SET order_id = ? WHERE id = ?", (order.id, quote_id))
        log.info("quote_became_order", quote_id=quote_id, number=quote.number, order_id=order.id)
        return self.get(quote_id)
