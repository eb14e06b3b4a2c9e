"""The core routes: health, nodes and devices, files, print jobs (until each moves into its component)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from hub.api import (CHUNK, ApiProblem, problems, Items, PageQuery, RouteTable, body, enum_query, listed, multipart_reader,
                     path_id, request_key, respond)
from hub.files.storage import FileStore, StoredFile, too_large
from hub.files.schemas import FileInfo
from hub.fleet.registry import Fleet
from hub.fleet.schemas import Device, Node
from hub.jobs.schemas import Job, JobCreate, JobFilter, JobState
from hub.jobs.service import JobService
from hub.ops.health import Health


class JobListQuery(JobFilter, PageQuery):
    device: str | None = None


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
        safe_name = row["name"].replace('"', "").replace("\r", "").replace("\n", "")
        return web.FileResponse(self.files.path(sha), headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{safe_name}"',
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
