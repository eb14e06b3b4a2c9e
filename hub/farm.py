"""The print farm's business side in one place to wire: file analysis, the constrained queue,
printer profiles, filament stock, alerts, costs and orders.

``Hub`` builds one ``FarmServices`` and lets it add its routes to the HTTP
app and its bookkeeping to the scheduler's pass.
"""

from __future__ import annotations

from aiohttp import web

from .alerts import Alerts
from .costing import Costs
from .file_analysis import FileAnalyses
from .files import FileStore
from .jobs import JobService
from .printers import Printers
from .queue import PrintQueue
from .scheduler import Scheduler
from .stock import Stock
from .store import Store


class FarmServices:
    def __init__(self, store: Store, files: FileStore, jobs: JobService, scheduler: Scheduler) -> None:
        self.analyses = FileAnalyses(store, files)
        self.queue = PrintQueue(store, jobs, self.analyses, scheduler.wake)
        self.printers = Printers(store, scheduler.wake)
        self.stock = Stock(store)
        self.alerts = Alerts(store)
        self.costs = Costs(store, self.analyses)
        # Filament is booked before failed jobs are reset for a retry, and both before matching.
        scheduler.before_pass += [self.stock.book_finished, self.queue.retry_failed]
        self._parts = [self.analyses, self.queue, self.printers, self.stock, self.alerts, self.costs]

    def extend(self, app: web.Application) -> web.Application:
        for part in self._parts:
            app.add_routes(part.routes())
        return app

    def close(self) -> None:
        self.analyses.close()
