"""Who may do what over HTTP: the role policy (one table), authentication of each
request, CSRF for cookie sessions, login throttling, security headers and CORS.
"""

from __future__ import annotations

import hmac
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase

import structlog
from aiohttp import hdrs, web

from hub.config import AuthConfig

from .accounts import Accounts, Principal, Role

log = structlog.get_logger("farmhand.hub.access")

SESSION_COOKIE = "farmhand_session"
CSRF_COOKIE = "farmhand_csrf"
CSRF_HEADER = "X-CSRF-Token"
PRINCIPAL = web.RequestKey("principal", Principal)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

PUBLIC: frozenset[Role] = frozenset()
ANY_USER = frozenset({Role.VIEWER, Role.OPERATOR, Role.ADMIN})
OPERATORS = frozenset({Role.OPERATOR, Role.ADMIN})
ADMINS = frozenset({Role.ADMIN})


@dataclass(frozen=True)
class Rule:
    methods: str  # "*" or a comma-separated list
    path: str  # fnmatch pattern on the route's template, e.g. /api/v1/files/{sha256}
    roles: frozenset[Role] | None  # None: no authentication needed

    def matches(self, method: str, path: str) -> bool:
        return (self.methods == "*" or method in self.methods.split(",")) and fnmatchcase(path, self.path)


# First match wins. Agents are not users: they get only the routes named for them.
POLICY: tuple[Rule, ...] = (
    Rule("GET,HEAD", "/healthz", None),
    Rule("GET,HEAD", "/api/v1/openapi.json", None),
    Rule("GET,HEAD", "/api/docs", None),
    Rule("GET,HEAD", "/", None),
    Rule("GET,HEAD", "/panel*", None),
    Rule("POST", "/api/v1/session", None),
    Rule("*", "/api/v1/session", ANY_USER),
    Rule("GET,HEAD", "/api/v1/files/{*}", ANY_USER | {Role.AGENT}),
    Rule("POST", "/api/v1/render*/output*", OPERATORS | {Role.AGENT}),
    Rule("POST", "/api/v1/render*/frames*", OPERATORS | {Role.AGENT}),
    Rule("*", "/api/v1/users*", ADMINS),
    Rule("*", "/api/v1/tokens*", ADMINS),
    Rule("*", "/api/v1/webhooks*", ADMINS),  # export-backup: webhook secrets
    Rule("*", "/api/v1/backups*", ADMINS),  # export-backup: a backup holds everything
    Rule("GET,HEAD", "*", ANY_USER),
    Rule("*", "*", OPERATORS),
)


def required_roles(method: str, path: str) -> frozenset[Role] | None:
    for rule in POLICY:
        if rule.matches(method, path):
            return rule.roles
    return ADMINS


def route_path(request: web.Request) -> str:
    """The route's template (so a rule names /api/v1/jobs/{id}, not each id); the raw path when none matched."""
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else None
    return canonical or request.path


class Denied(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def authenticate(accounts: Accounts, request: web.Request) -> Principal | None:
    auth = request.headers.get(hdrs.AUTHORIZATION, "")
    if auth:
        scheme, _, secret = auth.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Denied(401, "Unauthorized", "Authorization must be 'Bearer <token>'")
        principal = accounts.by_token(secret.strip())
        if principal is None:
            raise Denied(401, "Unauthorized", "unknown or revoked token")
        return principal
    sid = request.cookies.get(SESSION_COOKIE)
    return accounts.by_session(sid) if sid else None


def check_csrf(principal: Principal, request: web.Request) -> None:
    """Cookie sessions only: a cross-site form can send the cookie but cannot read it to echo it."""
    if principal.via != "session" or request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not principal.csrf or not hmac.compare_digest(sent, principal.csrf):
        raise Denied(403, "CSRF check failed", f"a cookie session must send the {CSRF_HEADER} header "
                                               f"with the value of the {CSRF_COOKIE} cookie")


def check_origin(request: web.Request) -> None:
    """A WebSocket is not covered by the same-origin policy: refuse other sites' pages."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return
    host = origin.split("://", 1)[-1]
    if host != request.host:
        raise Denied(403, "Cross-origin refused", f"origin {origin} is not this hub ({request.host})")


def access_middleware(accounts: Accounts, cors_origins: list[str],  # type: ignore[no-untyped-def]
                      on_denied: Callable[[Denied], web.StreamResponse]):
    cors = frozenset(cors_origins)

    @web.middleware
    async def access(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        if request.method == "OPTIONS" and request.headers.get(hdrs.ORIGIN) in cors:
            return web.Response(status=204)  # a CORS preflight; on_prepare adds the allow headers
        roles = required_roles(request.method, route_path(request))
        try:
            principal = authenticate(accounts, request)
            if roles is not None:
                if principal is None:
                    raise Denied(401, "Unauthorized", "log in, or send 'Authorization: Bearer <token>'")
                if principal.role not in roles:
                    raise Denied(403, "Forbidden", f"role {principal.role.value} may not "
                                                   f"{request.method} {route_path(request)}")
                check_csrf(principal, request)
                if request.headers.get(hdrs.UPGRADE, "").lower() == "websocket":
                    check_origin(request)
        except Denied as exc:
            log.info("request_denied", method=request.method, path=request.path, status=exc.status,
                     reason=exc.detail)
            return on_denied(exc)
        if principal is not None:
            request[PRINCIPAL] = principal
        return await handler(request)

    return access


class LoginLimiter:
    """At most ``failures`` failed logins per client address and per user name in a sliding window."""

    def __init__(self, failures: int, window_s: float) -> None:
        self.failures = failures
        self.window_s = window_s
        self._seen: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._seen.setdefault(key, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def retry_after(self, *keys: str) -> float:
        """Seconds until another attempt is allowed for these keys; 0 when allowed now."""
        now = time.monotonic()
        waits = [self.window_s - (now - t[0]) for k in keys
                 if len(t := self._recent(k, now)) >= self.failures]
        return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self._recent(key, now).append(now)
        if len(self._seen) > 10_000:
            # Bounded memory under a spray of names: forget the idle ones.
            for key in [k for k, t in self._seen.items() if not self._recent(k, now)]:
                del self._seen[key]

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._seen.pop(key, None)


CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def security_headers(config: AuthConfig) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    allowed = set(config.cors_origins)

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        origin = request.headers.get(hdrs.ORIGIN)
        if origin and origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers["Access-Control-Allow-Headers"] = f"Authorization, Content-Type, {CSRF_HEADER}, If-None-Match"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE"
            response.headers["Access-Control-Expose-Headers"] = "ETag"

    return on_prepare

