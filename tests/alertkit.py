"""Real receivers for alert notifications: an HTTP webhook endpoint and an SMTP server (aiosmtpd),
both on loopback ports of their own, recording what they are sent."""

from __future__ import annotations

import asyncio
import json
import ssl
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


class WebhookSink:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes, dict[str, Any]]] = []
        self.fail_next = 0  # answer this many posts with a 500, as a receiver that is down would
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _post(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=500, text="receiver down")
        self.received.append((dict(request.headers), raw, json.loads(raw)))
        return web.Response(status=204)

    async def __aenter__(self) -> WebhookSink:
        app = web.Application()
        app.add_routes([web.post("/hook", self._post)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def events(self, alert_id: int) -> list[str]:
        return [body["event"] for _, _, body in self.received if body["alert"]["id"] == alert_id]


class SmtpSink:
    """aiosmtpd's SMTP protocol served on this test's event loop.

    With ``tls`` (the server's certificate) and ``users`` it is a submission server as mail providers run
    them: STARTTLS before anything else, then a login, then mail; each login tried is kept in ``logins``.
    """

    def __init__(self, tls: ssl.SSLContext | None = None, users: dict[str, str] | None = None) -> None:
        self.messages: list[Message] = []
        self.logins: list[tuple[str, str, bool]] = []  # (mechanism, user, accepted)
        self.port = 0
        self._tls = tls
        self._users = users
        self._server: asyncio.base_events.Server | None = None

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      login: LoginPassword) -> AuthResult:
        user = login.login.decode()
        accepted = self._users is not None and self._users.get(user) == login.password.decode()
        self.logins.append((mechanism, user, accepted))
        return AuthResult(success=accepted, handled=False)  # aiosmtpd then answers 535 itself

    def _protocol(self) -> SMTP:
        if self._tls is None:
            return SMTP(self, hostname="sink.local")
        return SMTP(self, hostname="sink.local", tls_context=self._tls, require_starttls=True,
                    auth_required=True, authenticator=self._authenticate)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd
        self.messages.append(message_from_bytes(envelope.content))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    async def __aenter__(self) -> SmtpSink:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
