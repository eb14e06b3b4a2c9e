"""Pause, resume and emergency stop from the API: each is recorded in the outbox
(so it survives a restart and is re-sent until acknowledged) before the 202.

The job's state follows the device's own events (job_paused, job_resumed), not
the request: a command the device refuses changes nothing.
"""

from __future__ import annotations

import uuid

import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from protocol.messages import Command, EmergencyStop, PauseJob, ResumeJob

from hub.api.bodies import respond
from hub.api.problems import ApiProblem
from hub.api.routes import Op
from hub.ids import ascii_int
from hub.jobs import JobService, JobState, load_job_row
from hub.mqtt import CommandOutbox
from hub.store import Store


class ControlAccepted(BaseModel):
    command_id: str
    device: str
    action: str = Field(description="pause, resume or emergency_stop")


log = structlog.get_logger("farmhand.hub.controls")


class DeviceControls:
    def __init__(self, store: Store, outbox: CommandOutbox, jobs: JobService) -> None:
        self.store = store
        self.outbox = outbox
        self.jobs = jobs

    def ops(self) -> list[Op]:
        return [
            Op("POST", "/api/v1/jobs/{id}/pause", self.pause, response=ControlAccepted, status=202,
               summary="Ask the device printing this job to pause"),
            Op("POST", "/api/v1/jobs/{id}/resume", self.resume, response=ControlAccepted, status=202,
               summary="Ask the device to resume this paused job"),
            Op("POST", "/api/v1/devices/{node}/{device}/emergency-stop", self.emergency_stop,
               response=ControlAccepted, status=202, tags=("devices",),
               summary="Emergency stop: the firmware halts at once (M112 on serial printers)"),
        ]

    def _send(self, node: str, body: Command, job_id: int | None, action: str) -> web.Response:
        with self.store.transaction() as db:
            out = self.outbox.record(db, node, body, job_id)
        self.outbox.send(out)
        log.info("control_sent", action=action, device=f"{node}/{body.device}", job_id=job_id,
                 command_id=body.command_id)
        return respond(ControlAccepted(command_id=body.command_id, device=f"{node}/{body.device}", action=action), 202)

    def _job(self, request: web.Request, allowed: tuple[JobState, ...], action: str) -> dict:
        raw = request.match_info["id"]
        row = load_job_row(self.store.db, job_id) if (job_id := ascii_int(raw)) is not None else None
        if row is None:
            raise ApiProblem(404, "Job not found", f"no job {raw!r}")
        if row["state"] not in allowed:
            raise ApiProblem(409, "Job state conflict", f"job {raw} is {row['state']}: only a "
                             f"{' or '.join(allowed)} job can be {action}d")
        return row

    async def pause(self, request: web.Request) -> web.Response:
        job = self._job(request, (JobState.PRINTING,), "pause")
        body = PauseJob(command_id=f"pause-{job['id']}-{uuid.uuid4().hex[:8]}", device=job["device"])
        return self._send(job["node"], body, job["id"], "pause")

    async def resume(self, request: web.Request) -> web.Response:
        job = self._job(request, (JobState.PAUSED,), "resume")
        body = ResumeJob(command_id=f"resume-{job['id']}-{uuid.uuid4().hex[:8]}", device=job["device"])
        return self._send(job["node"], body, job["id"], "resume")

    async def emergency_stop(self, request: web.Request) -> web.Response:
        node, device = request.match_info["node"], request.match_info["device"]
        if self.store.one("SELECT 1 FROM devices WHERE node = ? AND id = ?", (node, device)) is None:
            raise ApiProblem(404, "Device not found", f"no device {node}/{device}")
        body = EmergencyStop(command_id=f"estop-{uuid.uuid4().hex}", device=device)
        return self._send(node, body, None, "emergency_stop")
