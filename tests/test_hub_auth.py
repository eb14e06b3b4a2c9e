"""Who may call the hub: tokens by role, panel logins with CSRF, throttling, headers, CORS."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiohttp
import pytest

from hub.access.accounts import Accounts, Role
from hub.config import AuthConfig
from hub.store import Store

from .authkit import ADMIN_PASSWORD, TOKENS, auth_config, bearer
from .hubkit import Farm, farm  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

GCODE = b"G28\nG1 X10 F3000\n"


async def call(hub, method: str, path: str, role: str | None = None, source: str | None = None,  # type: ignore[no-untyped-def]
               **kw):
    """``source``: the client's own address (another 127.x), as a second machine would have."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0)) if source else None
    async with aiohttp.ClientSession(headers=bearer(role) if role else None, connector=connector) as s:
        async with s.request(method, hub.http_url + path, **kw) as r:
            body = await r.json(content_type=None) if "json" in r.content_type else await r.read()
            return r.status, body, r


async def test_no_credentials_is_401_problem(farm: Farm) -> None:
    hub = await farm.hub()
    status, body, r = await call(hub, "GET", "/api/v1/jobs")
    assert status == 401 and r.content_type == "application/problem+json"
    assert "Bearer" in body["detail"]
    status, body, _ = await call(hub, "GET", "/api/v1/jobs", headers={"Authorization": "Bearer fh_not_a_token_at_all"})
    assert status == 401 and "unknown" in body["detail"]


async def test_roles_follow_the_policy_table(farm: Farm) -> None:
    hub = await farm.hub()
    sha = await farm.http(hub).upload(GCODE)
    job = await farm.http(hub).submit(sha)

    assert (await call(hub, "GET", "/api/v1/jobs", "viewer"))[0] == 200
    status, body, _ = await call(hub, "POST", f"/api/v1/jobs/{job['id']}/cancel", "viewer")
    assert status == 403 and "viewer" in body["detail"]
    assert (await call(hub, "POST", f"/api/v1/jobs/{job['id']}/cancel", "operator"))[0] == 200

    assert (await call(hub, "GET", f"/api/v1/files/{sha}", "agent"))[:2] == (200, GCODE)
    assert (await call(hub, "GET", "/api/v1/users", "agent"))[0] == 403
    assert (await call(hub, "GET", "/api/v1/jobs", "agent"))[0] == 403
    assert (await call(hub, "GET", "/api/v1/tokens", "operator"))[0] == 403
    assert (await call(hub, "GET", "/api/v1/users", "admin"))[0] == 200


async def test_token_is_shown_once_stored_hashed_and_revocable(farm: Farm) -> None:
    hub = await farm.hub()
    status, created, _ = await call(hub, "POST", "/api/v1/tokens", "admin", json={"name": "ci", "role": "viewer"})
    assert status == 201
    secret = created["token"]
    headers = {"Authorization": f"Bearer {secret}"}
    assert (await call(hub, "GET", "/api/v1/jobs", headers=headers))[0] == 200

    _, listing, _ = await call(hub, "GET", "/api/v1/tokens", "admin")
    assert [t["name"] for t in listing["items"]] == ["ci"] and "token" not in listing["items"][0]
    with sqlite3.connect(hub.config.data_dir / "hub.db") as db:
        dumped = "\n".join(db.iterdump())
    assert secret not in dumped

    assert (await call(hub, "DELETE", f"/api/v1/tokens/{created['id']}", "admin"))[0] == 200
    assert (await call(hub, "GET", "/api/v1/jobs", headers=headers))[0] == 401


async def test_panel_session_needs_csrf_for_changes(farm: Farm) -> None:
    hub = await farm.hub()
    sha = await farm.http(hub).upload(GCODE)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as s:
        async with s.post(f"{hub.http_url}/api/v1/session", json={"username": "admin", "password": ADMIN_PASSWORD}) as r:
            assert r.status == 200
            me = await r.json()
            cookie = r.headers.getall("Set-Cookie")
        session_cookie = next(c for c in cookie if c.startswith("farmhand_session="))
        assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie
        assert me["role"] == "admin" and me["csrf_token"]

        async with s.get(f"{hub.http_url}/api/v1/jobs") as r:
            assert r.status == 200
        async with s.post(f"{hub.http_url}/api/v1/jobs", json={"file_sha256": sha}) as r:
            assert r.status == 403 and "CSRF" in (await r.json())["title"]
        async with s.post(f"{hub.http_url}/api/v1/jobs", json={"file_sha256": sha},
                          headers={"X-CSRF-Token": me["csrf_token"]}) as r:
            assert r.status == 201
        async with s.delete(f"{hub.http_url}/api/v1/session", headers={"X-CSRF-Token": me["csrf_token"]}) as r:
            assert r.status == 204
        async with s.get(f"{hub.http_url}/api/v1/jobs") as r:
            assert r.status == 401


async def test_a_logged_in_panel_session_is_not_hijacked_by_another_sites_websocket(farm: Farm) -> None:
    """A browser sends the panel's cookie with any page's WebSocket; only the panel's own origin may use it."""
    hub = await farm.hub()
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as s:
        async with s.post(f"{hub.http_url}/api/v1/session", json={"username": "admin", "password": ADMIN_PASSWORD}) as r:
            assert r.status == 200
        for evil in ("http://evil.example", f"http://{hub.http_url.split('://')[1]}.evil.example"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(f"{hub.http_url}/api/v1/live", headers={"Origin": evil})
            assert refused.value.status == 403, evil
        async with s.ws_connect(f"{hub.http_url}/api/v1/live", headers={"Origin": hub.http_url}) as ws:
            await ws.send_json({"subscribe": ["devices"]})
            assert (await ws.receive_json(timeout=10))["subscribed"] == ["devices"]


async def test_failed_logins_are_throttled(farm: Farm) -> None:
    hub = await farm.hub(auth={**auth_config(), "login_failures": 3})
    wrong = {"username": "admin", "password": "not-the-password"}
    for _ in range(3):
        assert (await call(hub, "POST", "/api/v1/session", json=wrong))[0] == 401
    status, body, r = await call(hub, "POST", "/api/v1/session",
                                 json={"username": "admin", "password": ADMIN_PASSWORD})
    assert status == 429 and int(r.headers["Retry-After"]) > 0, "even the right password waits out the pause"


async def test_an_attacker_elsewhere_cannot_lock_the_admin_out(farm: Farm) -> None:
    hub = await farm.hub(auth={**auth_config(), "login_failures": 3})
    wrong = {"username": "admin", "password": "not-the-password"}
    for _ in range(3):
        assert (await call(hub, "POST", "/api/v1/session", json=wrong, source="127.0.0.2"))[0] == 401
    right = {"username": "admin", "password": ADMIN_PASSWORD}
    assert (await call(hub, "POST", "/api/v1/session", json=right, source="127.0.0.2"))[0] == 429
    status, body, _ = await call(hub, "POST", "/api/v1/session", json=right, source="127.0.0.3")
    assert status == 200 and body["name"] == "admin", "the attacker slowed only themselves"
    # Spraying many names from one address is slowed too, at four times the per-name count.
    for n in range(12):
        await call(hub, "POST", "/api/v1/session", json={"username": f"u{n}", "password": "x"}, source="127.0.0.4")
    assert (await call(hub, "POST", "/api/v1/session", json=right, source="127.0.0.4"))[0] == 429


async def test_an_admin_disables_enables_and_deletes_users_and_ends_their_sessions(farm: Farm) -> None:
    hub = await farm.hub()
    status, user, _ = await call(hub, "POST", "/api/v1/users", "admin",
                                 json={"username": "olga", "password": "olga-password-1", "role": "operator"})
    assert status == 201
    login = {"username": "olga", "password": "olga-password-1"}

    async def session() -> aiohttp.ClientSession:
        s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies from an IP address
        async with s.post(hub.http_url + "/api/v1/session", json=login) as r:
            assert r.status == 200
        return s

    async def works(s: aiohttp.ClientSession) -> int:
        async with s.get(hub.http_url + "/api/v1/jobs") as r:
            return r.status

    first = await session()
    try:
        assert await works(first) == 200
        status, changed, _ = await call(hub, "PATCH", f"/api/v1/users/{user['id']}", "admin", json={"disabled": True})
        assert status == 200 and changed["disabled_at"] is not None
        assert await works(first) == 401, "a disabled user's session fails at once"
        assert (await call(hub, "POST", "/api/v1/session", json=login))[0] == 401
        await call(hub, "PATCH", f"/api/v1/users/{user['id']}", "admin", json={"disabled": False})
        second = await session()
        assert await works(second) == 200
        status, ended, _ = await call(hub, "DELETE", f"/api/v1/users/{user['id']}/sessions", "admin")
        assert status == 200 and ended == {"ended": 1}
        assert await works(second) == 401
        await second.close()
        assert (await call(hub, "DELETE", f"/api/v1/users/{user['id']}", "admin"))[0] == 204
        assert (await call(hub, "POST", "/api/v1/session", json=login))[0] == 401
    finally:
        await first.close()
    (admin,) = [u for u in (await call(hub, "GET", "/api/v1/users", "admin"))[1]["items"] if u["role"] == "admin"]
    status, problem, _ = await call(hub, "PATCH", f"/api/v1/users/{admin['id']}", "admin", json={"disabled": True})
    assert status == 409 and "last admin" in problem["detail"]
    assert (await call(hub, "DELETE", f"/api/v1/users/{admin['id']}", "admin"))[0] == 409


async def test_security_headers_and_cors_off_by_default(farm: Farm) -> None:
    hub = await farm.hub()
    for path in ("/healthz", "/panel/", "/api/v1/jobs"):
        _, _, r = await call(hub, "GET", path, headers={"Origin": "http://evil.example"})
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Referrer-Policy"] == "no-referrer"
        assert "Access-Control-Allow-Origin" not in r.headers


async def test_cors_for_a_configured_origin(farm: Farm) -> None:
    hub = await farm.hub(auth={**auth_config(), "cors_origins": ["https://dash.example"]})
    status, _, r = await call(hub, "OPTIONS", "/api/v1/jobs", headers={"Origin": "https://dash.example"})
    assert status == 204 and r.headers["Access-Control-Allow-Origin"] == "https://dash.example"
    _, _, r = await call(hub, "GET", "/api/v1/jobs", "viewer", headers={"Origin": "https://other.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_first_run_creates_an_admin_with_a_one_time_password(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        accounts = Accounts(store, AuthConfig())
        password = accounts.ensure_admin()
        assert password and accounts.check_password("admin", password)["role"] == Role.ADMIN.value
        assert accounts.check_password("admin", password + "x") is None
        assert accounts.ensure_admin() is None, "a second start creates nobody and prints nothing"
        assert password not in "\n".join(store.db.conn.iterdump())
    finally:
        store.close()


def test_bootstrap_tokens_come_from_the_environment(tmp_path: Path) -> None:
    from hub.config import HubConfig
    from protocol.config import load

    token = TOKENS["operator"]
    cfg = load(HubConfig, None, "FARMHAND_HUB", environ={
        "FARMHAND_HUB__AUTH__BOOTSTRAP_TOKENS": f'[{{name = "ci", role = "operator", token = "{token}"}}]'})
    store = Store(tmp_path)
    try:
        principal = Accounts(store, cfg.auth).by_token(token)
        assert principal is not None and principal.role == Role.OPERATOR
    finally:
        store.close()
