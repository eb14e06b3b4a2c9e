"""HTTP routes of render jobs and their outputs; handlers only translate HTTP to the render services."""

from __future__ import annotations

from aiohttp import web

from hub.api.bodies import body, enum_query, multipart_reader, path_id, request_key, respond
from hub.api.models import Items
from hub.api.problems import ApiProblem
from hub.api.routes import Op, RouteTable
from hub.ids import ascii_int

from .costs import RenderCosting
from .outputs import RenderOutputs
from .schemas import (
    RenderCost,
    RenderJob,
    RenderJobCreate,
    RenderJobFilter,
    RenderJobState,
    RenderOutput,
    RenderSubmission,
    StoredOutput,
)
from .service import RenderJobService


def _job_id(request: web.Request) -> int:
    return path_id(request, "render job")


def _preview(request: web.Request) -> bool:
    return request.query.get("preview", "").lower() in ("1", "true", "yes")


class RenderApi:
    def __init__(self, jobs: RenderJobService, outputs: RenderOutputs, costing: RenderCosting) -> None:
        self.jobs = jobs
        self.outputs = outputs
        self.costing = costing

    def ops(self) -> list[Op]:
        t = RouteTable()
        base, tags = "/api/v1/render-jobs", ("render",)
        t.add("POST", base, self.create, body=RenderJobCreate, response=RenderSubmission, status=201, tags=tags,
              summary="Queue a render job, or a batch of them (Idempotency-Key header makes retries safe)")
        t.add("GET", base, self.list, response=Items[RenderJob], query=RenderJobFilter, tags=tags,
              summary="Render jobs")
        t.add("GET", base + "/{id}", self.get, response=RenderJob, tags=tags,
              summary="One render job: tasks, progress and ETA")
        t.add("POST", base + "/{id}/pause", self.pause, response=RenderJob, tags=tags,
              summary="Start no more tasks of the job (running ones finish)")
        t.add("POST", base + "/{id}/resume", self.resume, response=RenderJob, tags=tags, summary="Resume a paused job")
        t.add("POST", base + "/{id}/cancel", self.cancel, response=RenderJob, tags=tags,
              summary="Cancel a job (202 while its running tasks are stopped)")
        t.add("GET", base + "/{id}/cost", self.cost, response=RenderCost, tags=tags,
              summary="Estimated (from the preview) and actual cost")
        t.add("GET", base + "/{id}/outputs", self.list_outputs, response=Items[RenderOutput], tags=tags,
              summary="Frames delivered so far")
        t.add("GET", base + "/{id}/outputs.zip", self.zip, response_type="application/zip", tags=tags,
              summary="All frames as one zip, streamed (?preview=true: the preview frames)")
        t.add("GET", base + "/{id}/outputs/{frame}", self.download, response_type="application/octet-stream",
              tags=tags, summary="One frame's image (?preview=true: its preview)")
        t.add("POST", "/api/v1/render/outputs", self.upload, response=StoredOutput, status=201,
              body_type="multipart/form-data", tags=tags,
              summary="A render node delivers a frame: fields task_id, frame, sha256, then file")
        return t.ops

    async def create(self, request: web.Request) -> web.Response:
        spec = await body(request, RenderJobCreate, "Invalid render job")
        submission, created = self.jobs.create(spec, request_key=request_key(request))
        return respond(submission, 201 if created else 200)

    async def list(self, request: web.Request) -> web.Response:
        state = enum_query(request, "state", RenderJobState)
        return respond(Items[RenderJob](items=self.jobs.list(state)))

    async def get(self, request: web.Request) -> web.Response:
        return respond(self.jobs.get(_job_id(request)))

    async def pause(self, request: web.Request) -> web.Response:
        return respond(self.jobs.pause(_job_id(request)))

    async def resume(self, request: web.Request) -> web.Response:
        return respond(self.jobs.resume(_job_id(request)))

    async def cancel(self, request: web.Request) -> web.Response:
        job, done = self.jobs.cancel(_job_id(request))
        return respond(job, 200 if done else 202)

    async def cost(self, request: web.Request) -> web.Response:
        return respond(self.costing.cost(_job_id(request)))

    async def list_outputs(self, request: web.Request) -> web.Response:
        return respond(Items(items=self.outputs.list(_job_id(request))))

    async def download(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["frame"]
        frame = ascii_int(raw, signed=True)
        if frame is None:
            raise ApiProblem(404, "Render output not found", f"frame {raw!r} is not a frame number")
        row = self.outputs.get(_job_id(request), frame, _preview(request))
        safe = row["name"].replace('"', "").replace("\r", "").replace("\n", "")
        return web.FileResponse(self.outputs.files.path(row["sha256"]), headers={
            "Content-Type": "application/octet-stream", "Content-Disposition": f'attachment; filename="{safe}"'})

    async def zip(self, request: web.Request) -> web.StreamResponse:
        return await self.outputs.zip(request, _job_id(request), _preview(request))

    async def upload(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            raise ApiProblem(422, "Invalid render output", "send multipart/form-data: task_id, frame, sha256, file")
        stored = await self.outputs.receive(await multipart_reader(request))
        return respond(stored, 201)
