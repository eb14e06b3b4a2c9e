"""Orders: a customer's items, each copy a print job, followed through post-processing.

An order and its items are written in one transaction before the answer.
G-code items become jobs at once; mesh items are sliced first (for the machine
model asked for, or one the farm has that the model fits) and become jobs when
their slice is done — an order whose mesh no machine and profile can take is
refused whole, with the reason per model. Jobs are created per copy and
counted, so a hub stopped half-way creates only the missing ones next start.

An order's status is derived from its jobs and recorded stages, never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from typing import Any

import structlog
from aiohttp import web

from hub.access import PRINCIPAL
from hub.api.bodies import body, listed, respond, row_id
from hub.api.models import Items
from hub.api.problems import ApiProblem
from hub.api.routes import Op
from hub.jobs import ACTIVE_STATES, JobError, JobState, PrintJobCreate, PrintQueue
from hub.slicing import SliceJobs, SliceRequest, SliceState
from hub.store import Store, timestamp, utcnow
from hub.tasks import stop_tasks

from .costing import Costs, QuoteRequest
from .order_schemas import (
    Order,
    OrderChange,
    OrderCost,
    OrderCreate,
    OrderFields,
    OrderItem,
    OrderItemIn,
    OrderListQuery,
    OrderStatus,
    StageIn,
    StageRecord,
)

log = structlog.get_logger("farmhand.hub.orders")

_RUNNING = {s.value for s in ACTIVE_STATES}


def _slicing(mesh: str, model: str, material: str | None, quality: str) -> SliceRequest:
    return SliceRequest(mesh_sha256=mesh, machine_model=model, material=(material or "pla").lower(), quality=quality)


def _status(order: dict[str, Any], copies: int, states: list[str], stages: list[str], done: set[str]) -> OrderStatus:
    if order["cancelled_at"]:
        return OrderStatus.CANCELLED
    if len(states) < copies:
        return OrderStatus.DRAFT
    count = Counter(states)
    if count[JobState.COMPLETED.value] == len(states):
        if not set(stages) - done:
            return OrderStatus.DONE
        return OrderStatus.POST_PROCESSING if done else OrderStatus.PRINTED
    if count[JobState.QUEUED.value] == len(states):
        return OrderStatus.QUEUED
    if any(s in _RUNNING or s == JobState.QUEUED.value for s in states):
        return OrderStatus.PRINTING
    return OrderStatus.FAILED


class Orders:
    def __init__(self, store: Store, queue: PrintQueue, slicing: SliceJobs, costs: Costs) -> None:
        self.store = store
        self.queue = queue
        self.slicing = slicing
        self.costs = costs
        self._tasks: dict[int, asyncio.Task[None]] = {}

    # ------------------------------------------------------------------ lifecycle

    def resume(self) -> None:
        """Finish what a stopped hub left: items sliced (or being sliced) but without all their jobs."""
        for item in self.store.all(
                "SELECT i.id FROM order_items i JOIN orders o ON o.id = i.order_id"
                " WHERE o.cancelled_at IS NULL AND i.error IS NULL AND i.copies >"
                " (SELECT COUNT(*) FROM job_requirements r WHERE r.order_item_id = i.id)"):
            self._follow(item["id"])

    async def stop(self) -> None:
        await stop_tasks(*self._tasks.values())

    # ------------------------------------------------------------------ create

    async def _machine_for(self, n: int, item: OrderItemIn) -> str:
        """The machine model to slice a mesh item for; a 422 naming why each candidate cannot take it."""
        if item.machine_model is not None:
            candidates = [item.machine_model]
        else:
            candidates = [r["model"] for r in self.store.all(
                "SELECT model, COUNT(*) AS n FROM devices WHERE render IS NULL AND model IS NOT NULL"
                " GROUP BY model ORDER BY n DESC, model")]
        if not candidates:
            raise ApiProblem(422, "Cannot slice", f"item {n}: a mesh is sliced for a printer's machine model, and "
                                                  "no printer in the farm has one; give machine_model")
        reasons = []
        for model in candidates:
            try:
                await self.slicing.validate(self._slice_request(item, model))
                return model
            except ApiProblem as exc:
                reasons.append(f"{model}: {exc.detail}")
        raise ApiProblem(422, "Cannot slice", f"item {n}: no machine model can take this mesh ({'; '.join(reasons)})")

    @staticmethod
    def _slice_request(item: OrderItemIn, model: str) -> SliceRequest:
        return _slicing(item.file_sha256, model, item.material, item.quality)

    async def create(self, spec: OrderCreate) -> Order:
        plans: list[tuple[OrderItemIn, str, str | None]] = []  # (item, kind, machine model to slice for)
        for n, item in enumerate(spec.items, 1):
            if self.store.one("SELECT 1 FROM files WHERE sha256 = ?", (item.file_sha256,)) is None:
                raise ApiProblem(422, "Unknown file", f"item {n}: no file with sha256 {item.file_sha256}")
            try:
                kind, _ = await self.queue.analyses.body(item.file_sha256)
            except ApiProblem as exc:
                raise ApiProblem(exc.status, exc.title, f"item {n}: {exc.detail}") from None
            plans.append((item, kind, await self._machine_for(n, item) if kind == "mesh" else None))
        when = lambda d: timestamp(d) if d is not None else None  # noqa: E731
        with self.store.transaction() as db:
            order_id = db.execute(
                "INSERT INTO orders (customer, reference, notes, deadline, price, stages, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (spec.customer, spec.reference, spec.notes, when(spec.deadline), spec.price, json.dumps(spec.stages),
                 utcnow())).lastrowid
            item_ids = [db.execute(
                "INSERT INTO order_items (order_id, file_sha256, copies, material, color, deadline, notes,"
                " machine_model, quality, gcode_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (order_id, item.file_sha256, item.copies, item.material.upper() if item.material else None,
                 item.color, when(item.deadline or spec.deadline), item.notes, model,
                 item.quality if kind == "mesh" else None, item.file_sha256 if kind == "gcode" else None)).lastrowid
                for item, kind, model in plans]
        log.info("order_created", order_id=order_id, customer=spec.customer, items=len(item_ids))
        for item_id, (_, kind, _) in zip(item_ids, plans, strict=True):
            if kind == "mesh":
                self._follow(item_id)  # asks for the slice, then queues the copies
            else:
                await self._queue_item(item_id)
        assert order_id is not None
        return self.get(order_id)

    def _follow(self, item_id: int) -> None:
        task = asyncio.get_running_loop().create_task(self._after_slice(item_id), name=f"hub:order-item:{item_id}")
        self._tasks[item_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(item_id, None))

    async def _after_slice(self, item_id: int) -> None:
        try:
            item = self._item(item_id)
            if item["gcode_sha256"] is None:
                slice_id = item["slice_job_id"]
                if slice_id is None:  # the hub stopped between taking the order and asking for the slice
                    job, _ = await self.slicing.submit(_slicing(item["file_sha256"], item["machine_model"],
                                                                item["material"], item["quality"]))
                    self.store.db.execute("UPDATE order_items SET slice_job_id = ? WHERE id = ?", (job.id, item_id))
                    slice_id = job.id
                sliced = await self.slicing.wait(slice_id)
                if sliced.state != SliceState.DONE:
                    error = f"slicing failed: {sliced.error or sliced.state.value}"
                    self.store.db.execute("UPDATE order_items SET error = ? WHERE id = ?", (error, item_id))
                    log.warning("order_item_not_sliced", item_id=item_id, slice_id=sliced.id)
                    return
                self.store.db.execute("UPDATE order_items SET gcode_sha256 = ? WHERE id = ?",
                                      (sliced.gcode_sha256, item_id))
            await self._queue_item(item_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("order_item_failed", item_id=item_id)
            self.store.db.execute("UPDATE order_items SET error = ? WHERE id = ?",
                                  (f"{type(exc).__name__}: {getattr(exc, 'detail', exc)}", item_id))

    def _item(self, item_id: int) -> dict[str, Any]:
        row = self.store.one("SELECT i.*, o.cancelled_at, o.reference, o.customer FROM order_items i"
                             " JOIN orders o ON o.id = i.order_id WHERE i.id = ?", (item_id,))
        assert row is not None
        return row

    async def _queue_item(self, item_id: int) -> None:
        item = self._item(item_id)
        if item["cancelled_at"]:
            return
        sha = item["gcode_sha256"]
        if item["quoted_cost"] is None:
            try:
                quote = await self.costs.quote(QuoteRequest(file_sha256=sha, machine_model=item["machine_model"],
                                                            material=item["material"] or "PLA",
                                                            copies=item["copies"]))
                self.store.db.execute("UPDATE order_items SET quoted_cost = ?, quoted_price = ? WHERE id = ?",
                                      (quote.cost, quote.price, item_id))
            except ApiProblem as exc:
                log.warning("order_item_unquoted", item_id=item_id, reason=exc.detail)
        analysis = await self.queue.analyses.ensure(sha)
        made = self.store.one("SELECT COUNT(*) AS n FROM job_requirements WHERE order_item_id = ?", (item_id,))
        label = item["reference"] or f"order {item['order_id']}"
        for copy in range((made or {"n": 0})["n"] + 1, item["copies"] + 1):
            spec = PrintJobCreate(file_sha256=sha, name=f"{label}: item {item_id} ({copy}/{item['copies']})",
                                  material=item["material"], color=item["color"], deadline=item["deadline"])
            self.queue.submit_analysed(spec, analysis, order_item_id=item_id)
        log.info("order_item_queued", item_id=item_id, copies=item["copies"])

    # ------------------------------------------------------------------ read

    def get(self, order_id: int) -> Order:
        order = self.store.one("SELECT * FROM orders WHERE id = ?", (order_id,))
        if order is None:
            raise ApiProblem(404, "Order not found", f"no order {order_id}")
        return self._view(order)

    def list(self) -> list[Order]:
        return [self._view(o) for o in self.store.all("SELECT * FROM orders ORDER BY id")]

    def _view(self, order: dict[str, Any]) -> Order:
        items = self.store.all("SELECT * FROM order_items WHERE order_id = ? ORDER BY id", (order["id"],))
        jobs = self.store.all(
            "SELECT j.id, j.state, j.duration_s, r.order_item_id FROM jobs j JOIN job_requirements r"
            " ON r.job_id = j.id JOIN order_items i ON i.id = r.order_item_id WHERE i.order_id = ? ORDER BY j.id",
            (order["id"],))
        stages = json.loads(order["stages"])
        done = [StageRecord(**r) for r in self.store.all(
            "SELECT stage, by, at, notes FROM order_stages WHERE order_id = ? ORDER BY id", (order["id"],))]
        copies = sum(i["copies"] for i in items)
        status = _status(order, copies, [j["state"] for j in jobs], stages, {s.stage for s in done})
        views = [OrderItem(**{k: i[k] for k in OrderItem.model_fields if k in i},
                           jobs=[j["id"] for j in jobs if j["order_item_id"] == i["id"]]) for i in items]
        return Order(id=order["id"], customer=order["customer"], reference=order["reference"], notes=order["notes"],
                     deadline=order["deadline"], created_at=order["created_at"], cancelled_at=order["cancelled_at"],
                     status=status, stages=stages, stages_done=done, jobs=dict(Counter(j["state"] for j in jobs)),
                     items=views, cost=self._cost(order, items, jobs))

    def _cost(self, order: dict[str, Any], items: list[dict[str, Any]], jobs: list[dict[str, Any]]) -> OrderCost:
        per_copy = {i["id"]: (i["quoted_cost"] or 0.0) / i["copies"] for i in items}
        actual = cost = 0.0
        for j in jobs:
            if j["duration_s"] is not None:
                spent = self.costs.job_cost(j["id"]).cost
                actual += spent
                cost += spent
            elif j["state"] == JobState.QUEUED.value or j["state"] in _RUNNING:
                cost += per_copy[j["order_item_id"]]
        quoted = sum(i["quoted_cost"] or 0.0 for i in items)
        price = order["price"] if order["price"] is not None else sum(i["quoted_price"] or 0.0 for i in items)
        return OrderCost(currency=self.costs.model().currency, quoted_cost=round(quoted, 2),
                         actual_cost=round(actual, 2), cost=round(cost, 2), price=round(price, 2),
                         margin=round(price - cost, 2))

    # ------------------------------------------------------------------ change

    def record_stage(self, order_id: int, stage: str, by: str, notes: str | None) -> Order:
        order = self.get(order_id)
        if order.stages and stage not in order.stages:
            raise ApiProblem(422, "Unknown stage", f"order {order_id} has the stages {', '.join(order.stages)}; "
                                                   f"not {stage!r}")
        if order.status not in (OrderStatus.PRINTED, OrderStatus.POST_PROCESSING):
            raise ApiProblem(409, "Order state conflict", f"order {order_id} is {order.status.value}: "
                                                          "stages are recorded once every copy is printed")
        if any(s.stage == stage for s in order.stages_done):
            raise ApiProblem(409, "Stage already recorded", f"{stage} of order {order_id} was recorded already")
        self.store.db.execute("INSERT INTO order_stages (order_id, stage, by, at, notes) VALUES (?, ?, ?, ?, ?)",
                              (order_id, stage, by, utcnow(), notes))
        log.info("order_stage_recorded", order_id=order_id, stage=stage, by=by)
        return self.get(order_id)

    def update(self, order_id: int, change: OrderFields) -> Order:
        """Customer, reference, notes, price, deadline and stages; the items' copies are jobs already."""
        order = self.get(order_id)
        data = change.model_dump(exclude_unset=True)
        if order.status == OrderStatus.CANCELLED:
            raise ApiProblem(409, "Order state conflict", f"order {order_id} is cancelled")
        recorded = [s.stage for s in order.stages_done if s.stage not in data.get("stages", order.stages)]
        if recorded:
            raise ApiProblem(409, "Stage already recorded", f"{', '.join(recorded)} of order {order_id} "
                                                            "was signed off: it stays in the stages")
        retimed = [i for i in order.items if i.deadline == order.deadline] if "deadline" in data else []
        if "deadline" in data:  # items that took the order's deadline take the new one
            data["deadline"] = timestamp(data["deadline"]) if data["deadline"] else None
        if "stages" in data:
            data["stages"] = json.dumps(data["stages"])
        with self.store.transaction() as db:
            if data:
                db.execute(f"UPDATE orders SET {', '.join(f'{k} = ?' for k in data)} WHERE id = ?",
                           (*data.values(), order_id))
            for item in retimed:
                db.execute("UPDATE order_items SET deadline = ? WHERE id = ?", (data["deadline"], item.id))
        self.queue.set_deadline([j for i in retimed for j in i.jobs], data.get("deadline"))
        log.info("order_updated", order_id=order_id, fields=sorted(data))
        return self.get(order_id)

    def cancel(self, order_id: int) -> Order:
        order = self.get(order_id)
        if order.status in (OrderStatus.CANCELLED, OrderStatus.DONE):
            raise ApiProblem(409, "Order state conflict", f"order {order_id} is already {order.status.value}")
        # Recorded first: an item whose slice finishes meanwhile then queues nothing.
        self.store.db.execute("UPDATE orders SET cancelled_at = ? WHERE id = ?", (utcnow(), order_id))
        for item in order.items:
            task = self._tasks.get(item.id)
            if task is not None:
                task.cancel()
        for item in order.items:
            for job_id in item.jobs:
                with contextlib.suppress(JobError):  # already ended: nothing to cancel
                    self.queue.service.cancel(job_id)
        log.info("order_cancelled", order_id=order_id)
        return self.get(order_id)

    # ------------------------------------------------------------------ HTTP

    def ops(self) -> list[Op]:
        async def create(request: web.Request) -> web.Response:
            return respond(await self.create(await body(request, OrderCreate)), 201)

        async def list_orders(request: web.Request) -> web.Response:
            return respond(listed(request, self.list(), ("status", "customer")))

        async def get(request: web.Request) -> web.Response:
            return respond(self.get(row_id(request)))

        async def stage(request: web.Request) -> web.Response:
            principal = request.get(PRINCIPAL)
            spec = await body(request, StageIn)
            return respond(self.record_stage(row_id(request), request.match_info["stage"],
                                             principal.name if principal else "anonymous", spec.notes))

        async def cancel(request: web.Request) -> web.Response:
            return respond(self.cancel(row_id(request)))

        async def change(request: web.Request) -> web.Response:
            return respond(self.update(row_id(request), await body(request, OrderChange)))

        tags = ("orders",)
        return [
            Op("POST", "/api/v1/orders", create, body=OrderCreate, response=Order, status=201, tags=tags,
               summary="Take an order: each copy of each item becomes a print job (meshes are sliced first)"),
            Op("GET", "/api/v1/orders", list_orders, query=OrderListQuery, response=Items[Order], tags=tags,
               summary="Orders with their status and cost"),
            Op("GET", "/api/v1/orders/{id}", get, response=Order, tags=tags, summary="One order"),
            Op("PATCH", "/api/v1/orders/{id}", change, body=OrderChange, response=Order, tags=tags,
               summary="Change an order's customer, reference, notes, price, deadline or stages: only the fields sent"),
            Op("POST", "/api/v1/orders/{id}/stages/{stage}", stage, body=StageIn, response=Order, tags=tags,
               summary="Record a post-processing stage as done, by whom and when"),
            Op("POST", "/api/v1/orders/{id}/cancel", cancel, response=Order, tags=tags,
               summary="Cancel an order and its jobs"),
        ]
