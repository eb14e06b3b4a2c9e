"""Requests aiohttp's HTTP parser refuses (a request line over 8,190 bytes, a NUL in a header)
are answered before any middleware sees them, in text/plain. The hub answers every error
in problem+json (RFC 9457), so scripts parse one shape; this server says these in it too.

aiohttp has no public hook for those answers: ``ProblemAppRunner`` builds the same server
``web.AppRunner`` would, as a ``web.Server`` subclass whose connections answer parser
errors in problem+json. tests/test_hub_api.py sends such requests over a raw socket, so a
change in aiohttp's internals shows there.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from hub.api import PROBLEM_TYPE


class _ProblemRequestHandler(RequestHandler):
    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        response = super().handle_error(request, status, exc, message)
        if status >= 500:
            return response  # aiohttp's own, which hides the traceback
        title = HTTPStatus(status).phrase
        body = {"type": f"urn:farmhand:problem:{title.lower().replace(' ', '-')}", "title": title,
                "status": status, "detail": message or title}
        problem = web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_TYPE)
        problem.force_close()
        return problem


class _ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class ProblemAppRunner(web.AppRunner):
    """``web.AppRunner`` whose server answers the parser's refusals in problem+json."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _ProblemServer(server.request_handler, request_factory=server.request_factory,
                              handler_cancellation=server.handler_cancellation, loop=server._loop,
                              **server._kwargs)
