"""Reports over a period: how busy each printer was, the filament used, and what orders earned.

Periods are half-open ``[from, to)`` in UTC; the default is the last 7 days.
Printing time counts the part of each job between its start and its end (or
now, while it runs) that falls inside the period. The timeline cuts a period
into buckets (the panel's dashboard charts it): the farm's utilisation and
the filament booked in each.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from protocol.codec import describe

from hub.api.bodies import respond
from hub.api.problems import ApiProblem
from hub.api.routes import Op
from hub.store import Store, timestamp

from .order_schemas import Order

DEFAULT_DAYS = 7
MAX_BUCKETS = 500


class Period(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    start: AwareDatetime | None = Field(None, alias="from", description="ISO 8601 with offset; default: 7 days ago")
    end: AwareDatetime | None = Field(None, alias="to", description="ISO 8601 with offset; default: now")


class TimelineQuery(Period):
    every: int = Field(3600, ge=60, le=31 * 86400, description="seconds in each bucket; the last may be shorter")


class Bucket(BaseModel):
    start: str
    hours: float = Field(description="the bucket's length")
    printing_hours: float = Field(description="summed over the printers")
    utilisation: float = Field(description="printing hours / (printers × hours)")
    grams: dict[str, float] = Field(description="filament booked, by material")


class Timeline(BaseModel):
    start: str
    end: str
    every_s: int
    printers: int
    buckets: list[Bucket]


class PrinterUse(BaseModel):
    device: str = Field(description="node/device")
    model: str | None
    jobs: int
    printing_hours: float
    period_hours: float
    utilisation: float = Field(description="printing hours / period hours")


class Utilisation(BaseModel):
    start: str
    end: str
    printers: list[PrinterUse]


class MaterialUse(BaseModel):
    material: str
    color: str | None
    grams: float
    jobs: int


class Materials(BaseModel):
    start: str
    end: str
    materials: list[MaterialUse]
    total_grams: float


class OrderSums(BaseModel):
    count: int
    revenue: float = Field(description="sum of the orders' prices (agreed, or quoted)")
    cost: float
    margin: float


class OrdersReport(BaseModel):
    start: str
    end: str
    currency: str
    total: OrderSums
    by_customer: dict[str, OrderSums]
    by_status: dict[str, OrderSums]


def _parsed(query: dict[str, str] | web.Request, model: type[Period]) -> Any:
    q = query.query if isinstance(query, web.Request) else query
    try:
        return model.model_validate(dict(q))
    except ValidationError as exc:
        raise ApiProblem(422, "Invalid period", describe(exc)) from None


def period(query: dict[str, str] | web.Request) -> tuple[datetime, datetime]:
    return _bounds(_parsed(query, Period))


def _bounds(p: Period) -> tuple[datetime, datetime]:
    end = (p.end or datetime.now(UTC)).astimezone(UTC)
    start = (p.start or end - timedelta(days=DEFAULT_DAYS)).astimezone(UTC)
    if start >= end:
        raise ApiProblem(422, "Invalid period", f"'from' ({start.isoformat()}) must be before 'to' ({end.isoformat()})")
    return start, end


def _sums(orders: list[Order]) -> OrderSums:
    revenue = sum(o.cost.price for o in orders)
    cost = sum(o.cost.cost for o in orders)
    return OrderSums(count=len(orders), revenue=round(revenue, 2), cost=round(cost, 2),
                     margin=round(revenue - cost, 2))


class Reports:
    def __init__(self, store: Store, orders: Callable[[], list[Order]], currency: Callable[[], str]) -> None:
        self.store = store
        self.orders = orders
        self.currency = currency

    def _printers(self) -> dict[tuple[str, str], str | None]:
        return {(r["node"], r["id"]): r["model"] for r in self.store.all(
            "SELECT node, id, model FROM devices WHERE render IS NULL ORDER BY node, id")}

    def _printing(self, start: datetime, end: datetime) -> list[tuple[tuple[str, str], datetime, datetime]]:
        """Each job's printing time inside the period: (printer, from, to)."""
        now, spans = datetime.now(UTC), []
        for j in self.store.all("SELECT node, device, started_at, finished_at FROM jobs WHERE started_at IS NOT NULL"
                                " AND started_at < ? AND (finished_at IS NULL OR finished_at > ?)",
                                (timestamp(end), timestamp(start))):
            began = max(datetime.fromisoformat(j["started_at"]), start)
            ended = min(datetime.fromisoformat(j["finished_at"]) if j["finished_at"] else now, end)
            if ended >= began:  # a job that started and ended in the same millisecond still ran there
                spans.append(((j["node"], j["device"]), began, ended))
        return spans

    def utilisation(self, start: datetime, end: datetime) -> Utilisation:
        hours = (end - start).total_seconds() / 3600
        printers = self._printers()
        busy: dict[tuple[str, str], float] = defaultdict(float)
        jobs: dict[tuple[str, str], int] = defaultdict(int)
        for printer, began, ended in self._printing(start, end):
            busy[printer] += (ended - began).total_seconds() / 3600
            jobs[printer] += 1
        return Utilisation(start=timestamp(start), end=timestamp(end), printers=[
            PrinterUse(device=f"{node}/{dev}", model=model, jobs=jobs[(node, dev)],
                       printing_hours=round(busy[(node, dev)], 4), period_hours=round(hours, 4),
                       utilisation=round(busy[(node, dev)] / hours, 4))
            for (node, dev), model in printers.items()])

    def materials(self, start: datetime, end: datetime) -> Materials:
        rows = self.store.all(
            "SELECT f.material, f.color_hex AS color, SUM(u.grams) AS grams, COUNT(DISTINCT u.job_id) AS jobs"
            " FROM spool_usage u JOIN spools s ON s.id = u.spool_id JOIN filaments f ON f.id = s.filament_id"
            " WHERE u.booked_at >= ? AND u.booked_at < ? GROUP BY f.material, f.color_hex"
            " ORDER BY grams DESC, f.material", (timestamp(start), timestamp(end)))
        used = [MaterialUse(material=r["material"], color=r["color"], grams=round(r["grams"], 3), jobs=r["jobs"])
                for r in rows]
        return Materials(start=timestamp(start), end=timestamp(end), materials=used,
                         total_grams=round(sum(u.grams for u in used), 3))

    def timeline(self, start: datetime, end: datetime, every: timedelta) -> Timeline:
        count = -(-(end - start) // every)
        if count > MAX_BUCKETS:
            raise ApiProblem(422, "Invalid period", f"{count} buckets of {every.total_seconds():g} s; at most "
                                                    f"{MAX_BUCKETS}: ask for a shorter period or longer buckets")
        bounds = [(start + i * every, min(start + (i + 1) * every, end)) for i in range(count)]
        busy = [0.0] * count
        for _, began, ended in self._printing(start, end):
            for i in range((began - start) // every, min((ended - start) // every, count - 1) + 1):
                lo, hi = bounds[i]
                busy[i] += max((min(ended, hi) - max(began, lo)).total_seconds(), 0.0) / 3600
        grams: list[dict[str, float]] = [defaultdict(float) for _ in range(count)]
        for r in self.store.all(
                "SELECT f.material, u.grams, u.booked_at FROM spool_usage u JOIN spools s ON s.id = u.spool_id"
                " JOIN filaments f ON f.id = s.filament_id WHERE u.booked_at >= ? AND u.booked_at < ?",
                (timestamp(start), timestamp(end))):
            grams[(datetime.fromisoformat(r["booked_at"]) - start) // every][r["material"]] += r["grams"]
        printers = len(self._printers())
        buckets = []
        for (lo, hi), hours_busy, used in zip(bounds, busy, grams, strict=True):
            hours = (hi - lo).total_seconds() / 3600
            buckets.append(Bucket(start=timestamp(lo), hours=round(hours, 4), printing_hours=round(hours_busy, 4),
                                  utilisation=round(hours_busy / (printers * hours), 4) if printers else 0.0,
                                  grams={m: round(g, 3) for m, g in sorted(used.items())}))
        return Timeline(start=timestamp(start), end=timestamp(end), every_s=int(every.total_seconds()),
                        printers=printers, buckets=buckets)

    def orders_report(self, start: datetime, end: datetime) -> OrdersReport:
        lo, hi = timestamp(start), timestamp(end)
        orders = [o for o in self.orders() if lo <= o.created_at < hi]
        by_customer: dict[str, list[Order]] = defaultdict(list)
        by_status: dict[str, list[Order]] = defaultdict(list)
        for o in orders:
            by_customer[o.customer].append(o)
            by_status[o.status.value].append(o)
        return OrdersReport(start=lo, end=hi, currency=self.currency(), total=_sums(orders),
                            by_customer={k: _sums(v) for k, v in sorted(by_customer.items())},
                            by_status={k: _sums(v) for k, v in sorted(by_status.items())})

    def ops(self) -> list[Op]:
        def route(make: Callable[[datetime, datetime], BaseModel]) -> Callable[[web.Request], object]:
            async def handler(request: web.Request) -> web.Response:
                return respond(make(*period(request)))
            return handler

        async def timeline(request: web.Request) -> web.Response:
            q = _parsed(request, TimelineQuery)
            return respond(self.timeline(*_bounds(q), timedelta(seconds=q.every)))

        tags = ("reports",)
        return [
            Op("GET", "/api/v1/reports/timeline", timeline, query=TimelineQuery, response=Timeline, tags=tags,
               summary="The period in buckets: the farm's utilisation and the filament booked, by material, in each"),
            Op("GET", "/api/v1/reports/utilisation", route(self.utilisation), query=Period,  # type: ignore[arg-type]
               response=Utilisation, tags=tags, summary="Per printer: printing hours over the period's hours"),
            Op("GET", "/api/v1/reports/materials", route(self.materials), query=Period,  # type: ignore[arg-type]
               response=Materials, tags=tags, summary="Filament booked, in grams by material and colour"),
            Op("GET", "/api/v1/reports/orders", route(self.orders_report), query=Period,  # type: ignore[arg-type]
               response=OrdersReport, tags=tags, summary="Orders: count, revenue, cost and margin"),
        ]
