"""Requests to a PrusaLink printer: the login, conditional GETs and the printer's refusals in its own words.

One ``PrusaLinkHttp`` lives as long as one session of the driver. The first
request of a session is answered 401 with a challenge and sent again with the
digest; from then on the kept nonce answers every request at once. A stale
nonce (401 ``stale=true``) is renewed and the request sent once more. A 401 to
a request that carried credentials with a fresh nonce means the credentials
are wrong: that is ``AuthFailed`` at once, never another attempt, because some
firmwares lock the login after repeated failures. With ``api_key`` (older
builds) the key goes in ``X-Api-Key`` and a refusal is ``AuthFailed`` too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import structlog

from agent.net import Headers, HttpClient, Timeout

from .network import AuthFailed
from .prusalink_auth import Challenge, DigestLogin, UnsupportedChallenge

log = structlog.get_logger("farmhand.agent.prusalink")

BodyFactory = Callable[[], AsyncIterator[bytes]]
"""Makes the body of a request anew for each attempt (an upload may have to be sent twice)."""


class PrinterRefused(Exception):
    """The printer answered with an error status; ``text`` is its own message."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status
        self.text = text


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def printer_message(body: bytes, content_type: str) -> str:
    """The printer's words from an error body: the spec's JSON ``{title, text}`` or plain text."""
    raw = body.decode("utf-8", "replace").strip()
    if "json" in content_type:
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict):
            text = str(data.get("text") or data.get("message") or data.get("title") or "").strip()
            if text:
                return text
    if raw.startswith("<"):  # an HTML error page (the Pi's poorwsgi): its title says it
        start, end = raw.find("<title>"), raw.find("</title>")
        if 0 <= start < end:
            return raw[start + 7:end].strip()
    head, sep, rest = raw.partition(": ")
    return rest.strip() if sep and head.isdigit() else raw


def file_path(storage: str, name: str) -> str:
    return f"/api/v1/files/{quote(storage.strip('/'))}/{quote(name)}"


class PrusaLinkHttp:
    """A logged-in conversation with one printer."""

    def __init__(self, base_url: str, *, username: str | None = None, password: str | None = None,
                 api_key: str | None = None, timeout_s: float = 10.0) -> None:
        if api_key is None and (username is None or password is None):
            raise ValueError("PrusaLink needs a user name and password (digest) or an API key")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.login = DigestLogin(username, password) if username is not None and password is not None else None
        self.timeout = Timeout(total=timeout_s)
        self._etags: dict[str, tuple[str, Reply]] = {}
        # The client's User-Agent is stable: the Pi's PrusaLink ties its nonces to it.
        self._http = HttpClient(self.base_url)

    async def close(self) -> None:
        await self._http.close()

    # ------------------------------------------------------------- requests

    async def get(self, path: str, *, conditional: bool = False) -> Reply:
        """GET; with ``conditional`` an ETag the printer gave is sent back and a 304 returns the kept reply."""
        headers: dict[str, str] = {}
        kept = self._etags.get(path) if conditional else None
        if kept is not None:
            headers["If-None-Match"] = kept[0]
        reply = await self.request("GET", path, headers=headers)
        if reply.status == 304 and kept is not None:
            return Reply(304, reply.headers, kept[1].body)
        etag = reply.headers.get("ETag")
        if conditional and etag and reply.status == 200:
            self._etags[path] = (etag, reply)
        return reply

    async def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                      body: BodyFactory | None = None, timeout: Timeout | None = None) -> Reply:
        """One request, logged in; raises ``AuthFailed`` for refused credentials and ``PrinterRefused``
        for any other error status (3xx other than 304 included)."""
        sent_credentials = stale_retried = False
        for _ in range(3):
            send = dict(headers or {})
            send.update(self._credentials(method, path))
            sent_credentials = "Authorization" in send or "X-Api-Key" in send
            async with self._http.request(method, path, headers=send, body=body() if body is not None else None,
                                          timeout=timeout or self.timeout) as response:
                reply = Reply(response.status, response.headers, await response.read())
            if reply.status == 401:
                stale = self._challenged(reply)
                if not sent_credentials:
                    continue  # the first request of a session: expected, answer the challenge
                if stale and not stale_retried:
                    stale_retried = True
                    continue
                raise AuthFailed(self._refusal_words(reply))
            if reply.status == 403 and self.api_key is not None:
                raise AuthFailed(f"the printer refused the API key ({self._words(reply)})")
            if reply.status >= 300 and reply.status != 304:
                raise PrinterRefused(reply.status, self._words(reply))
            return reply
        raise AuthFailed("the printer kept asking for a login")  # three challenges in a row

    def _credentials(self, method: str, path: str) -> dict[str, str]:
        if self.api_key is not None:
            return {"X-Api-Key": self.api_key}
        assert self.login is not None
        header = self.login.header(method, path)
        return {"Authorization": header} if header else {}

    def _challenged(self, reply: Reply) -> bool:
        """Take the 401's challenge; True when it says our nonce was merely stale."""
        www = reply.headers.get("WWW-Authenticate", "")
        if self.api_key is not None:
            raise AuthFailed(f"the printer refused the API key ({self._words(reply)})")
        assert self.login is not None
        try:
            challenge = Challenge.parse(www)
        except UnsupportedChallenge as exc:
            raise AuthFailed(str(exc)) from exc
        self.login.challenged(challenge)
        if challenge.stale:
            log.info("printer renewed the login nonce", url=self.base_url)
        return challenge.stale

    def _refusal_words(self, reply: Reply) -> str:
        who = self.login.username if self.login else "?"
        return f"wrong user name or password for {who!r} (HTTP 401: {self._words(reply)})"

    @staticmethod
    def _words(reply: Reply) -> str:
        return printer_message(reply.body, reply.headers.get("Content-Type", "")) or f"HTTP {reply.status}"
