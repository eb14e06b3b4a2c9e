"""Errors as RFC 9457 problem details: what a handler raises and the middleware that answers it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .models import Problem

log = structlog.get_logger("farmhand.hub.api")

PROBLEM_TYPE = "application/problem+json"


class ApiProblem(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


class HttpError(Exception):
    """A component's own error that has an HTTP meaning: ``status`` and ``title``; the message is the detail.

    Components subclass it (``JobError``, ``UploadError``…) so the middleware
    answers them without knowing each component.
    """

    status = 400
    title = "Bad request"


def problem(status: int, title: str, detail: str) -> web.Response:
    slug = title.lower().replace(" ", "-")
    payload = Problem(type=f"urn:farmhand:problem:{slug}", title=title, status=status, detail=detail)
    return web.Response(status=status, text=payload.model_dump_json(), content_type=PROBLEM_TYPE)


@web.middleware
async def problems(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiProblem as exc:
        return problem(exc.status, exc.title, exc.detail)
    except HttpError as exc:
        return problem(exc.status, exc.title, str(exc))
    except HttpProcessingError as exc:
        # A body that breaks its own framing (a malformed multipart header, say) is the client's fault.
        return problem(400, "Malformed request", f"{request.method} {request.path}: {exc.message}")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem(exc.status, exc.reason, exc.text if exc.text and exc.text != exc.reason else
                       f"{request.method} {request.path}: {exc.reason}")
    except Exception:
        log.exception("http_handler_failed", method=request.method, path=request.path)
        return problem(500, "Internal error", "the hub failed to handle this request; see its log")
