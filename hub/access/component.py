"""``Access``: accounts, API tokens and sessions, and the policy every request passes."""

from __future__ import annotations

import sys

from aiohttp import web

from hub.api import Op, problem
from hub.component import Component, Middleware
from hub.config import AuthConfig
from hub.store import Store

from .accounts import Accounts
from .api import AccountApi
from .policy import access_middleware, security_headers
from .tables import TABLES


class Access(Component):
    name = "access"
    tables = TABLES

    def __init__(self, config: AuthConfig, store: Store) -> None:
        self.config = config
        self.accounts = Accounts(store, config)
        password = self.accounts.ensure_admin()
        if password is not None:
            # Shown once, on the console of whoever ran the first start; only its hash is kept.
            print(f"farmhand hub: created user {config.admin_user!r} with password {password} "
                  "(shown once: log in to the panel and keep it safe)", file=sys.stderr, flush=True)
        self._api = AccountApi(self.accounts, config)

    def ops(self) -> list[Op]:
        return self._api.ops()

    def middlewares(self) -> list[Middleware]:
        """Authenticates each request and checks its role against the policy (401/403 as problems)."""
        return [access_middleware(self.accounts, self.config.cors_origins,
                                  lambda d: problem(d.status, d.title, d.detail))]

    def install(self, app: web.Application) -> None:
        app.on_response_prepare.append(security_headers(self.config))
