"""``Alerting``: checks the rules every few seconds, raises and resolves alerts, delivers them,
and serves the rules, the history and acknowledgements over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from protocol.codec import describe

from hub.access import PRINCIPAL
from hub.api import ApiProblem, Items, Op, body, respond, row_id
from hub.component import Component
from hub.fleet import Fleet
from hub.store import Store, utcnow
from hub.tasks import stop_tasks

from .book import AlertBook, AlertRecord
from .channels import Notifier, Publish
from .conditions import Conditions
from .config import AlertingConfig, AlertRule
from .tables import TABLES

log = structlog.get_logger("farmhand.hub.alerting")

RULES_KEY = "alert_rules"


class AlertRules(BaseModel):
    rules: list[AlertRule] = Field(max_length=200)


class HistoryQuery(BaseModel):
    limit: int = Field(200, ge=1, le=5000)
    open: bool = Field(False, description="only alerts not resolved yet")


class Alerting(Component):
    """Alert rules by threshold: evaluated in a loop, raised once, resolved, acknowledged and delivered."""

    name = "alerting"
    tables = TABLES

    def __init__(self, store: Store, fleet: Fleet, config: AlertingConfig, hub_id: str, publish: Publish,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``publish(topic, payload)``: the hub's MQTT session, for the alert topic."""
        self.store = store
        self.config = config
        self.clock = clock
        self.book = AlertBook(store)
        self.conditions = Conditions(store, fleet, clock)
        self.notifier = Notifier(store, self.book, config, hub_id, publish)
        self._since: dict[tuple[str, str], float] = {}  # when each condition was first seen holding
        self._task: asyncio.Task[None] | None = None
        self.passes = 0

    # ------------------------------------------------------------------ rules

    def rules(self) -> list[AlertRule]:
        row = self.store.one("SELECT body FROM settings WHERE key = ?", (RULES_KEY,))
        return AlertRules.model_validate_json(row["body"]).rules if row else list(self.config.rules)

    def set_rules(self, rules: AlertRules) -> AlertRules:
        names = [r.name for r in rules.rules]
        for i, name in enumerate(names):
            if name in names[:i]:  # located as a validation error is, so an editor shows it by the field
                raise ApiProblem(422, "Invalid alert rules", f"rules.{i}.name: rule {names.index(name)} has this "
                                                             f"name already (got {name!r})")
        self.store.db.execute("INSERT OR REPLACE INTO settings (key, body, updated_at) VALUES (?, ?, ?)",
                              (RULES_KEY, rules.model_dump_json(), utcnow()))
        log.info("alert_rules_updated", rules=names)
        return rules

    # ------------------------------------------------------------------ the loop

    async def check(self) -> None:
        """One pass: raise what has held long enough, resolve what cleared, deliver what is pending."""
        rules = self.rules()
        holding = {(c.rule.name, c.subject): c for c in self.conditions.now(rules)}
        now = self.clock()
        self._since = {key: self._since.get(key, now) for key in holding}
        open_now = self.book.open_keys()
        for key, condition in holding.items():
            if key not in open_now and now - self._since[key] >= condition.rule.for_s:
                self.book.raise_(condition)  # and were it open after all, the unique index keeps it once
        known = {r.name for r in rules}
        for key, alert_id in open_now.items():
            if key not in holding or key[0] not in known:
                self.book.resolve(alert_id)
        await self.notifier.deliver()
        self.passes += 1

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bad pass is logged and the next one tries again
                log.exception("alerting_pass_failed")
            await asyncio.sleep(self.config.interval_s)

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="hub:alerting")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_tasks(task)
        await self.notifier.close()

    # ------------------------------------------------------------------ HTTP

    def ops(self) -> list[Op]:
        async def get_rules(request: web.Request) -> web.Response:
            return respond(AlertRules(rules=self.rules()))

        async def put_rules(request: web.Request) -> web.Response:
            return respond(self.set_rules(await body(request, AlertRules, "Invalid alert rules")))

        async def history(request: web.Request) -> web.Response:
            try:
                q = HistoryQuery.model_validate(dict(request.query))
            except ValidationError as exc:
                raise ApiProblem(422, "Invalid query", describe(exc)) from None
            return respond(Items[AlertRecord](items=self.book.history(q.limit, q.open)))

        async def acknowledge(request: web.Request) -> web.Response:
            principal = request.get(PRINCIPAL)
            return respond(self.book.acknowledge(row_id(request), principal.name if principal else "anonymous"))

        tags = ("alerts",)
        return [
            Op("GET", "/api/v1/alert-rules", get_rules, response=AlertRules, tags=tags,
               summary="The threshold rules in force (the config's until replaced)"),
            Op("PUT", "/api/v1/alert-rules", put_rules, body=AlertRules, response=AlertRules, tags=tags,
               summary="Replace the threshold rules"),
            Op("GET", "/api/v1/alerts/history", history, query=HistoryQuery, response=Items[AlertRecord], tags=tags,
               summary="Alerts newest first, resolved ones too, with their acknowledgement and deliveries"),
            Op("POST", "/api/v1/alerts/{id}/ack", acknowledge, response=AlertRecord, tags=tags,
               summary="An operator has seen the alert: records who and when (the first acknowledgement stands)"),
        ]
