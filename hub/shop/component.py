"""``Shop``: the print farm's business side: costs and quotes, filament stock, orders and reports."""

from __future__ import annotations

from hub.api import Op
from hub.component import Component
from hub.files import Files
from hub.jobs import Jobs
from hub.slicing import Slicing
from hub.store import Store

from .costing import Costs
from .orders import Orders
from .reports import Reports
from .stock import Stock
from .tables import TABLES


class Shop(Component):
    name = "shop"
    tables = TABLES

    def __init__(self, store: Store, files: Files, jobs: Jobs, slicing: Slicing) -> None:
        self.stock = Stock(store)
        self.costs = Costs(store, files.analyses, slicing.jobs)
        self.orders = Orders(store, jobs.queue, slicing.jobs, self.costs)
        self.reports = Reports(store, self.orders.list, lambda: self.costs.model().currency)
        # Filament used by finished jobs is booked before failed jobs are reset for a retry.
        jobs.before_scheduling(self.stock.book_finished)

    def ops(self) -> list[Op]:
        return [*self.stock.ops(), *self.costs.ops(), *self.orders.ops(), *self.reports.ops()]

    async def start(self) -> None:
        # Order items a stopped hub left half-done carry on.
        self.orders.resume()

    async def stop(self) -> None:
        await self.orders.stop()
