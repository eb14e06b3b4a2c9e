"""The hub's HTTP API (aiohttp): JSON in and out, errors as RFC 9457 problem details.

Handlers translate HTTP to calls on the job service, the file store and the
fleet, and return the pydantic models of ``schemas``; they hold no logic of
their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TypeVar

import structlog
from aiohttp import MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ValidationError

from protocol.codec import describe

from .ids import ascii_int
from .files import FileStore, StoredFile, UploadError, content_disposition, too_large
from .fleet import Fleet
from .jobs import JobError, JobService
from .listing import ListError, PageQuery, page
from .openapi import RouteTable
from .schemas import Device, FileInfo, Health, Items, Job, JobCreate, JobFilter, JobState, Node, Problem

log = structlog.get_logger("farmhand.hub.api")

PROBLEM_TYPE = "application/problem+json"
CHUNK = 256 * 1024

M = TypeVar("M", bound=BaseModel)
E = TypeVar("E", bound=Enum)


class ApiProblem(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


async def body(request: web.Request, model: type[M], title: str = "Invalid request") -> M:
    """The request's JSON body as ``model`` (an empty body is ``{}``); a 422 problem naming the bad field otherwise."""
    raw = await request.read()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise ApiProblem(422, title, describe(exc)) from None


def request_key(request: web.Request) -> str | None:
    """The client's Idempotency-Key, as the services keep it apart from keys that came over MQTT."""
    key = request.headers.get("Idempotency-Key")
    return f"http:{key}" if key else None


def enum_query(request: web.Request, name: str, enum: type[E]) -> E | None:
    """Query parameter ``name`` as one of ``enum``'s values (None when absent); a 422 problem listing them otherwise."""
    raw = request.query.get(name)
    try:
        return enum(raw) if raw else None
    except ValueError:
        raise ApiProblem(422, "Invalid filter",
                         f"{name} must be one of {', '.join(e.value for e in enum)}; got {raw!r}") from None


def problem(status: int, title: str, detail: str) -> web.Response:
    slug = title.lower().replace(" ", "-")
    payload = Problem(type=f"urn:farmhand:problem:{slug}", title=title, status=status, detail=detail)
    return web.Response(status=status, text=payload.model_dump_json(), content_type=PROBLEM_TYPE)


def respond(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(status=status, text=model.model_dump_json(), content_type="application/json")


@web.middleware
async def problems(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiProblem as exc:
        return problem(exc.status, exc.title, exc.detail)
    except JobError as exc:
        return problem(exc.status, exc.title, str(exc))
    except UploadError as exc:
        title = "Upload too large" if exc.status == 413 else "Invalid upload"
        return problem(exc.status, title, str(exc))
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


class JobListQuery(JobFilter, PageQuery):
    device: str | None = None


def listed(request: web.Request, items: list, filterable: tuple[str, ...] = ()) -> Items:  # type: ignore[type-arg]
    """A page of a list, filtered by the query (see ``listing``)."""
    try:
        chunk, cursor = page(request.query, items, filterable)
    except ListError as exc:
        raise ApiProblem(422, "Invalid list query", str(exc)) from None
    return Items(items=chunk, next=cursor)


async def multipart_reader(request: web.Request) -> MultipartReader:
    """The request's multipart reader; a 422 problem when the body cannot be one."""
    try:
        return await request.multipart()
    except ValueError as exc:  # e.g. a multipart Content-Type without a boundary
        raise ApiProblem(422, "Invalid upload", f"unreadable multipart body: {exc}") from None


def path_id(request: web.Request, what: str = "", key: str = "id") -> int:
    """The integer id in the path; a 404 naming ``what`` (a job, a render job…) for anything else."""
    raw = request.match_info[key]
    value = ascii_int(raw)
    if value is None:
        title = f"{what[:1].upper()}{what[1:]} not found" if what else "Not found"
        raise ApiProblem(404, title, f"no {what or 'resource'} {raw!r}: ids are integers")
    return value


def _job_id(request: web.Request) -> int:
    return path_id(request, "job")


def _file_info(row: dict | StoredFile) -> FileInfo:
    data = row if isinstance(row, dict) else row.__dict__
    return FileInfo(sha256=data["sha256"], name=data["name"], size=data["size"], created_at=data["created_at"],
                    url=f"/api/v1/files/{data['sha256']}")


class HttpApi:
    def __init__(self, jobs: JobService, files: FileStore, fleet: Fleet, health: Callable[[], Health]) -> None:
        self.jobs = jobs
        self.files = files
        self.fleet = fleet
        self.health = health
        # Called with each stored upload before it is answered; raising refuses it (see upload_screen).
        self.screen: Callable[[StoredFile], Awaitable[None]] | None = None

    def table(self) -> RouteTable:
        t = RouteTable()
        t.add("GET", "/healthz", self.get_health, response=Health, summary="Liveness and counters")
        t.add("GET", "/api/v1/nodes", self.list_nodes, response=Items[Node], query=PageQuery, summary="Agents")
        t.add("GET", "/api/v1/devices", self.list_devices, response=Items[Device], query=PageQuery,
              summary="Printers and render devices")
        t.add("POST", "/api/v1/files", self.upload, response=FileInfo, status=201, body_type="application/octet-stream",
              summary="Upload a file (raw body with ?name=, or multipart field 'file')")
        t.add("GET", "/api/v1/files", self.list_files, response=Items[FileInfo], query=PageQuery, summary="Files")
        t.add("GET", "/api/v1/files/{sha256}", self.download, response_type="application/octet-stream",
              summary="A file's bytes (agents fetch job files here)")
        t.add("POST", "/api/v1/jobs", self.create_job, body=JobCreate, response=Job, status=201,
              summary="Queue a print job (Idempotency-Key header makes retries safe)")
        t.add("GET", "/api/v1/jobs", self.list_jobs, response=Items[Job], query=JobListQuery, summary="Jobs")
        t.add("GET", "/api/v1/jobs/{id}", self.get_job, response=Job, summary="One job")
        t.add("POST", "/api/v1/jobs/{id}/cancel", self.cancel_job, response=Job,
              summary="Cancel a job (202 while the device stops it)")
        return t

    def app(self) -> web.Application:
        app = web.Application(middlewares=[problems])
        app.add_routes(self.table().routes())
        return app

    async def get_health(self, request: web.Request) -> web.Response:
        return respond(self.health())

    async def list_nodes(self, request: web.Request) -> web.Response:
        return respond(listed(request, self.fleet.nodes(), ("online", "hostname")))

    async def list_devices(self, request: web.Request) -> web.Response:
        return respond(listed(request, self.fleet.devices(), ("node", "state", "online", "kind")))

    # ------------------------------------------------------------------ files

    async def upload(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > self.files.max_bytes:
            raise too_large(self.files.max_mb)
        if request.content_type.startswith("multipart/"):
            reader = await multipart_reader(request)
            while (part := await reader.next()) is not None:
                if getattr(part, "name", None) == "file":
                    break
            else:
                raise ApiProblem(422, "Invalid upload", "multipart upload without a 'file' field")

            async def chunks():  # type: ignore[no-untyped-def]
                while chunk := await part.read_chunk(CHUNK):
                    yield chunk

            name = part.filename or request.query.get("name", "")
            stored = await self.files.receive(chunks(), name)
        else:
            name = request.query.get("name")
            if not name:
                raise ApiProblem(422, "Invalid upload", "a raw upload needs ?name=<file name>")
            stored = await self.files.receive(request.content.iter_chunked(CHUNK), name)
        if self.screen is not None:
            await self.screen(stored)
        return respond(_file_info(stored), 201 if stored.created else 200)

    async def list_files(self, request: web.Request) -> web.Response:
        return respond(listed(request, [_file_info(r) for r in self.files.list()], ("name",)))

    async def download(self, request: web.Request) -> web.StreamResponse:
        sha = request.match_info["sha256"]
        row = self.files.get(sha) if len(sha) == 64 else None
        if row is None:
            raise ApiProblem(404, "File not found", f"no file with sha256 {sha}")
        return web.FileResponse(self.files.path(sha), headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": content_disposition(row["name"]),
        })

    # ------------------------------------------------------------------ jobs

    async def create_job(self, request: web.Request) -> web.Response:
        spec = await body(request, JobCreate, "Invalid job")
        job, created = self.jobs.create(spec, request_key=request_key(request))
        return respond(job, 201 if created else 200)

    async def list_jobs(self, request: web.Request) -> web.Response:
        state = enum_query(request, "state", JobState)
        return respond(listed(request, self.jobs.list(state), ("state", "device")))

    async def get_job(self, request: web.Request) -> web.Response:
        return respond(self.jobs.get(_job_id(request)))

    async def cancel_job(self, request: web.Request) -> web.Response:
        outcome = self.jobs.cancel(_job_id(request))
        return respond(outcome.job, 200 if outcome.done else 202)
