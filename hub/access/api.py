"""HTTP endpoints for logging in (panel sessions), API tokens and users."""

from __future__ import annotations

import structlog
from aiohttp import web

from hub.api.bodies import body, listed, path_id, respond
from hub.api.listing import PageQuery
from hub.api.models import Items
from hub.api.problems import ApiProblem, problem
from hub.api.routes import Op
from hub.config import AuthConfig

from .accounts import AccountError, Accounts, Principal
from .policy import CSRF_COOKIE, PRINCIPAL, SESSION_COOKIE, LoginLimiter
from .schemas import Login, SessionInfo, SessionsEnded, Token, TokenCreate, TokenCreated, User, UserCreate, UserUpdate

log = structlog.get_logger("farmhand.hub.accounts")


def _principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def _id(request: web.Request) -> int:
    return path_id(request)


def _checked(call):  # type: ignore[no-untyped-def]
    try:
        return call()
    except AccountError as exc:
        raise ApiProblem(exc.status, exc.title, exc.detail) from None


class AccountApi:
    def __init__(self, accounts: Accounts, config: AuthConfig) -> None:
        self.accounts = accounts
        self.config = config
        # Counted per address, and per address and name: an attacker slows only themselves, never
        # the real user at another address. An address gets more tries in all (an office behind NAT).
        self.by_address = LoginLimiter(config.login_failures * 4, config.login_window_s)
        self.by_address_and_name = LoginLimiter(config.login_failures, config.login_window_s)

    def ops(self) -> list[Op]:
        return [
            Op("POST", "/api/v1/session", self.login, body=Login, response=SessionInfo, tags=("session",),
               summary="Log in to the panel: sets an HttpOnly session cookie and a CSRF cookie"),
            Op("GET", "/api/v1/session", self.whoami, response=SessionInfo, tags=("session",),
               summary="Who the request is authenticated as"),
            Op("DELETE", "/api/v1/session", self.logout, status=204, tags=("session",), summary="Log out"),
            Op("GET", "/api/v1/tokens", self.list_tokens, response=Items[Token], query=PageQuery,
               summary="API tokens (never the tokens themselves)"),
            Op("POST", "/api/v1/tokens", self.create_token, body=TokenCreate, response=TokenCreated, status=201,
               summary="Create an API token; the answer is the only time it is shown"),
            Op("DELETE", "/api/v1/tokens/{id}", self.revoke_token, response=Token, summary="Revoke a token"),
            Op("GET", "/api/v1/users", self.list_users, response=Items[User], query=PageQuery, summary="Users"),
            Op("POST", "/api/v1/users", self.create_user, body=UserCreate, response=User, status=201,
               summary="Create a panel user"),
            Op("PATCH", "/api/v1/users/{id}", self.update_user, body=UserUpdate, response=User,
               summary="Rename a user, change their role or password, disable (ending their sessions) or enable"),
            Op("DELETE", "/api/v1/users/{id}", self.delete_user, status=204,
               summary="Delete a user and end their sessions"),
            Op("DELETE", "/api/v1/users/{id}/sessions", self.end_sessions, response=SessionsEnded,
               summary="Log a user out everywhere"),
        ]

    # ------------------------------------------------------------------ session

    async def login(self, request: web.Request) -> web.Response:
        spec = await body(request, Login)
        address, pair = request.remote or "", f"{request.remote}|{spec.username}"
        wait = max(self.by_address.retry_after(address), self.by_address_and_name.retry_after(pair))
        if wait > 0:
            log.warning("login_throttled", user=spec.username, remote=request.remote)
            refused = problem(429, "Too many logins", f"too many failed logins; try again in {wait:.0f} s")
            refused.headers["Retry-After"] = str(max(1, round(wait)))
            return refused
        user = self.accounts.check_password(spec.username, spec.password)
        if user is None:
            self.by_address.failed(address)
            self.by_address_and_name.failed(pair)
            log.info("login_failed", user=spec.username, remote=request.remote)
            raise ApiProblem(401, "Login failed", "wrong user name or password")
        self.by_address_and_name.succeeded(pair)
        sid, csrf = self.accounts.open_session(user)
        response = respond(SessionInfo(name=user["username"], role=user["role"], via="session", csrf_token=csrf))
        max_age = int(self.config.session_hours * 3600)
        secure = self.config.secure_cookies
        response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="Strict", path="/", max_age=max_age,
                            secure=secure)
        # Readable by the page's script on purpose: echoing it proves the request came from our page.
        response.set_cookie(CSRF_COOKIE, csrf, httponly=False, samesite="Strict", path="/", max_age=max_age,
                            secure=secure)
        return response

    async def whoami(self, request: web.Request) -> web.Response:
        p = _principal(request)
        return respond(SessionInfo(name=p.name, role=p.role, via=p.via, csrf_token=p.csrf))

    async def logout(self, request: web.Request) -> web.Response:
        sid = request.cookies.get(SESSION_COOKIE)
        if sid:
            self.accounts.close_session(sid)
        response = web.Response(status=204)
        response.del_cookie(SESSION_COOKIE, path="/")
        response.del_cookie(CSRF_COOKIE, path="/")
        return response

    # ------------------------------------------------------------------ tokens and users

    async def list_tokens(self, request: web.Request) -> web.Response:
        return respond(listed(request, [Token(**t) for t in self.accounts.tokens()], ("role", "name")))

    async def create_token(self, request: web.Request) -> web.Response:
        spec = await body(request, TokenCreate)
        row, secret = self.accounts.create_token(spec.name, spec.role, _principal(request).name)
        return respond(TokenCreated(**row, token=secret), 201)

    async def revoke_token(self, request: web.Request) -> web.Response:
        return respond(Token(**_checked(lambda: self.accounts.revoke_token(_id(request)))))

    async def list_users(self, request: web.Request) -> web.Response:
        return respond(listed(request, [User(**u) for u in self.accounts.users()], ("role",)))

    async def create_user(self, request: web.Request) -> web.Response:
        spec = await body(request, UserCreate)
        row = _checked(lambda: self.accounts.create_user(spec.username, spec.password, spec.role))
        return respond(User(**row), 201)

    async def update_user(self, request: web.Request) -> web.Response:
        spec = await body(request, UserUpdate)
        return respond(User(**_checked(lambda: self.accounts.update_user(_id(request),
                                                                        spec.model_dump(exclude_unset=True)))))

    async def delete_user(self, request: web.Request) -> web.Response:
        _checked(lambda: self.accounts.delete_user(_id(request)))
        return web.Response(status=204)

    async def end_sessions(self, request: web.Request) -> web.Response:
        return respond(SessionsEnded(ended=_checked(lambda: self.accounts.end_sessions(_id(request)))))
