"""HTTP operations on print jobs: submit (plain or with constraints), list, read, cancel, hold, reorder."""

from __future__ import annotations

from aiohttp import web

from hub.api import Items, Op, PageQuery, body, enum_query, listed, path_id, request_key, respond, row_id

from .queue import JobRequirements, PrintJobCreate, PrintQueue, QueueMove, QueuedJob
from .schemas import Job, JobCreate, JobFilter, JobState
from .service import JobService


class JobListQuery(JobFilter, PageQuery):
    device: str | None = None


class JobsApi:
    def __init__(self, jobs: JobService, queue: PrintQueue) -> None:
        self.jobs = jobs
        self.queue = queue

    def ops(self) -> list[Op]:
        return [
            Op("POST", "/api/v1/jobs", self.create_job, body=JobCreate, response=Job, status=201,
               summary="Queue a print job (Idempotency-Key header makes retries safe)"),
            Op("GET", "/api/v1/jobs", self.list_jobs, response=Items[Job], query=JobListQuery, summary="Jobs"),
            Op("GET", "/api/v1/jobs/{id}", self.get_job, response=Job, summary="One job"),
            Op("POST", "/api/v1/jobs/{id}/cancel", self.cancel_job, response=Job,
               summary="Cancel a job (202 while the device stops it)"),
            Op("POST", "/api/v1/print-jobs", self.submit, body=PrintJobCreate, response=QueuedJob, status=201,
               tags=("jobs",), summary="Queue a print job with what it needs of a printer (material, nozzle, tags)"),
            Op("GET", "/api/v1/jobs/{id}/requirements", self.get_requirements, response=JobRequirements,
               summary="What the job needs of a printer"),
            Op("POST", "/api/v1/jobs/{id}/hold", self.hold, response=Job, summary="Keep a queued job from starting"),
            Op("POST", "/api/v1/jobs/{id}/release", self.release, response=Job, summary="Let a held job start"),
            Op("POST", "/api/v1/jobs/{id}/queue", self.move, body=QueueMove, response=Job,
               summary="Change a queued job's priority or place it ahead of another"),
        ]

    async def create_job(self, request: web.Request) -> web.Response:
        spec = await body(request, JobCreate, "Invalid job")
        job, created = self.jobs.create(spec, request_key=request_key(request))
        return respond(job, 201 if created else 200)

    async def list_jobs(self, request: web.Request) -> web.Response:
        state = enum_query(request, "state", JobState)
        return respond(listed(request, self.jobs.list(state), ("state", "device")))

    async def get_job(self, request: web.Request) -> web.Response:
        return respond(self.jobs.get(path_id(request, "job")))

    async def cancel_job(self, request: web.Request) -> web.Response:
        outcome = self.jobs.cancel(path_id(request, "job"))
        return respond(outcome.job, 200 if outcome.done else 202)

    # ------------------------------------------------------------------ the constrained queue

    async def submit(self, request: web.Request) -> web.Response:
        spec = await body(request, PrintJobCreate)
        job, created = await self.queue.submit(spec)
        return respond(QueuedJob(job=job, requirements=self.queue.requirements(job.id)), 201 if created else 200)

    async def get_requirements(self, request: web.Request) -> web.Response:
        return respond(self.queue.requirements(row_id(request)), exclude_unset=True)

    async def hold(self, request: web.Request) -> web.Response:
        return respond(self.queue.hold(row_id(request), True))

    async def release(self, request: web.Request) -> web.Response:
        return respond(self.queue.hold(row_id(request), False))

    async def move(self, request: web.Request) -> web.Response:
        return respond(self.queue.move(row_id(request), await body(request, QueueMove)))
