"""The print farm's business side in one place to wire: file analysis (and refusing bad
meshes at upload), slicing, the constrained queue, printer profiles, filament stock,
alerts, costs, orders and reports.

``Hub`` builds one ``FarmServices`` and lets it add its routes to the HTTP
app and its bookkeeping to the scheduler's pass.
"""

from __future__ import annotations

from aiohttp import web

from hub.ops.alerts import Alerts
from hub.shop.costing import Costs
from hub.files.analyses import FileAnalyses
from hub.files.storage import FileStore
from hub.jobs.service import JobService
from hub.api.routes import RouteTable
from hub.shop.orders import Orders
from hub.fleet.profiles import Printers
from hub.jobs.queue import PrintQueue
from hub.shop.reports import Reports
from hub.jobs.scheduler import Scheduler
from hub.slicing.jobs import SliceJobs
from hub.slicing.profiles import SlicingProfiles
from hub.shop.stock import Stock
from hub.store import Store
from hub.files.screen import UploadScreen


class FarmServices:
    def __init__(self, store: Store, files: FileStore, jobs: JobService, scheduler: Scheduler) -> None:
        self.analyses = FileAnalyses(store, files)
        self.queue = PrintQueue(store, jobs, self.analyses, scheduler.wake)
        self.printers = Printers(store, scheduler.wake)
        self.stock = Stock(store)
        self.alerts = Alerts(store)
        self.costs = Costs(store, self.analyses)
        self.screen_upload = UploadScreen(store, self.analyses)
        data_dir = files.root.parent
        self.profiles = SlicingProfiles(store, data_dir / "slicing-profiles")
        self.slicing = SliceJobs(store, files, self.analyses, self.profiles, data_dir / "slicing")
        self.costs.slicing = self.slicing
        self.orders = Orders(store, self.queue, self.slicing, self.costs)
        self.reports = Reports(store, self.orders.list, lambda: self.costs.model().currency)
        # Filament is booked before failed jobs are reset for a retry, and both before matching.
        scheduler.before_pass += [self.stock.book_finished, self.queue.retry_failed]
        self._parts = [self.analyses, self.queue, self.printers, self.stock, self.alerts, self.costs]
        self._documented = [self.profiles, self.slicing, self.orders, self.reports]
        # Slices and order items a stopped hub left half-done carry on (needs the running loop).
        self.slicing.resume()
        self.orders.resume()

    def extend(self, app: web.Application, table: RouteTable | None = None) -> web.Application:
        """Add the routes to ``app``; ``table`` (the OpenAPI route table) learns the documented ones."""
        for part in self._parts:
            app.add_routes(part.routes())
        ops = RouteTable()
        for documented in self._documented:
            ops.extend(documented.ops())
        app.add_routes(ops.routes())
        if table is not None:
            table.extend(ops.ops)
        return app

    async def stop(self) -> None:
        await self.orders.stop()
        await self.slicing.stop()
        self.close()

    def close(self) -> None:
        self.analyses.close()
