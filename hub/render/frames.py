"""A render job frame by frame, for the panel's frame grid: each frame's state and a thumbnail.

Thumbnails are the frames themselves when they are PNG or JPEG of at most
``THUMB_MAX_BYTES``, scaled by the browser: the hub has no image library and
decoding a 4K frame (let alone an EXR) would stall its event loop for every
panel that opens the page. Larger frames and other formats get no thumbnail
(the panel shows a placeholder and links the full frame).

Render events from the nodes are announced on the live bus (topic
``render-jobs``) so an open page refetches; the API's own changes are
announced by the live feed's middleware already.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hub.api.bodies import path_id, respond
from hub.api.problems import ApiProblem
from hub.api.routes import Op
from hub.bus import Bus
from hub.files import FileStore
from hub.ids import ascii_int
from hub.mqtt import Ingest, Received
from hub.store import Store

from .events import RenderEvent
from .schemas import TaskState
from .tasks import load_job, parse_wire

THUMB_MAX_BYTES = 1536 * 1024
MAX_FRAMES = 2000
_IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}

FrameState = Literal["queued", "rendering", "done", "failed", "cancelled"]


class FrameQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first: int | None = Field(None, description="first frame listed; default: the job's first frame")
    limit: int = Field(500, ge=1, le=MAX_FRAMES)


class Frame(BaseModel):
    frame: int
    state: FrameState
    device: str | None = Field(description="'node/device' that rendered it, or is rendering it")
    size: int | None = Field(description="bytes of the delivered frame")
    url: str | None = Field(description="the full frame, once delivered")
    thumb_url: str | None = Field(description="an image small enough for a grid; null: show a placeholder")


class FrameGrid(BaseModel):
    job_id: int
    frame_start: int
    frame_end: int
    frames: list[Frame]
    next: int | None = Field(description="pass as ?first= for the following frames; null on the last page")


def _job_id(request: web.Request) -> int:
    return path_id(request, "render job")


def _state(frame: int, task: dict[str, Any] | None, job_state: str) -> FrameState:
    """A frame without an output, from the task that covers it (the latest attempt)."""
    if task is None:
        return "cancelled" if job_state == "cancelled" else "queued"
    state = task["state"]
    if state in (TaskState.ASSIGNED.value, TaskState.RUNNING.value):
        # A task renders its frames in order: the one after those it finished is under way.
        return "rendering" if frame == task["frame_start"] + (task["frames_done"] or 0) else "queued"
    if state == TaskState.FAILED.value:
        return "failed"
    if state == TaskState.CANCELLED.value:
        return "cancelled"
    return "queued"


class RenderFrames:
    def __init__(self, store: Store, files: FileStore, bus: Bus, ingest: Ingest) -> None:
        self.store = store
        self.files = files
        self.bus = bus
        ingest.observe(RenderEvent, self.observe)

    def ops(self) -> list[Op]:
        base, tags = "/api/v1/render-jobs/{id}/frames", ("render",)
        return [
            Op("GET", base, self.grid, query=FrameQuery, response=FrameGrid, tags=tags,
               summary="Each frame's state, with links to the frame and its thumbnail"),
            Op("GET", base + "/{frame}/thumb", self.thumb, response_type="image/png", tags=tags,
               summary="A delivered frame as an image for a grid (PNG or JPEG up to 1.5 MiB; else 404)"),
        ]

    def observe(self, msg: Received[RenderEvent]) -> None:
        """Ingest observer: an open frame grid refetches when its job's tasks move."""
        body = msg.body
        if self.bus.subscribers:
            ids = parse_wire(body.task_id)
            row = self.store.one("SELECT job_id FROM render_tasks WHERE id = ?", (ids[0],)) if ids else None
            if row is not None and self.bus.wants("render-jobs", str(row["job_id"])):
                self.bus.publish("render-jobs", str(row["job_id"]), None)

    # ------------------------------------------------------------------ HTTP

    async def grid(self, request: web.Request) -> web.Response:
        job_id = _job_id(request)
        job = load_job(self.store.db, job_id)
        if job is None:
            raise ApiProblem(404, "Render job not found", f"no render job {job_id}")
        try:
            query = FrameQuery.model_validate(dict(request.query))
        except ValueError as exc:
            raise ApiProblem(422, "Invalid frame query", str(exc)) from None
        first = max(job["frame_start"], query.first if query.first is not None else job["frame_start"])
        last = min(job["frame_end"], first + query.limit - 1)
        outputs = {r["frame"]: r for r in self.store.all(
            "SELECT frame, sha256, size, node, device FROM render_outputs"
            " WHERE job_id = ? AND preview = 0 AND frame BETWEEN ? AND ?", (job_id, first, last))}
        # Later attempts have larger ids: the last task covering a frame says where it stands.
        tasks = self.store.all("SELECT * FROM render_tasks WHERE job_id = ? AND kind = 'frames' AND frame_end >= ?"
                               " AND frame_start <= ? ORDER BY id", (job_id, first, last))
        thumbs = job["file_format"] in ("PNG", "JPEG")
        frames = []
        for n in range(first, last + 1):
            task = next((t for t in reversed(tasks) if t["frame_start"] <= n <= t["frame_end"]), None)
            out = outputs.get(n)
            if out is not None:
                url = f"/api/v1/render-jobs/{job_id}/outputs/{n}"
                small = thumbs and out["size"] <= THUMB_MAX_BYTES
                frames.append(Frame(
                    frame=n, state="done", size=out["size"], url=url,
                    device=f"{out['node']}/{out['device']}" if out["node"] else None,
                    # The sha makes each thumbnail URL immutable, so browsers may cache it for good.
                    thumb_url=f"/api/v1/render-jobs/{job_id}/frames/{n}/thumb?v={out['sha256'][:16]}" if small
                    else None))
            else:
                device = f"{task['node']}/{task['device']}" if task and task["node"] else None
                state = _state(n, task, job["state"])
                frames.append(Frame(frame=n, state=state, device=device if state == "rendering" else None,
                                    size=None, url=None, thumb_url=None))
        return respond(FrameGrid(job_id=job_id, frame_start=job["frame_start"], frame_end=job["frame_end"],
                                 frames=frames, next=last + 1 if last < job["frame_end"] else None))

    async def thumb(self, request: web.Request) -> web.StreamResponse:
        job_id = _job_id(request)
        raw = request.match_info["frame"]
        frame = ascii_int(raw, signed=True)
        row = self.store.one("SELECT sha256, size FROM render_outputs WHERE job_id = ? AND frame = ? AND preview = 0",
                             (job_id, frame)) if frame is not None else None
        if row is None:
            raise ApiProblem(404, "Render output not found", f"render job {job_id} has no frame {raw} yet")
        if row["size"] > THUMB_MAX_BYTES:
            raise ApiProblem(404, "No thumbnail", f"frame {frame} is {row['size']} bytes: download it instead")
        path = self.files.path(row["sha256"])
        with path.open("rb") as fh:
            head = fh.read(8)
        kind = next((t for magic, t in _IMAGE_MAGIC.items() if head.startswith(magic)), None)
        if kind is None:
            raise ApiProblem(404, "No thumbnail", f"frame {frame} is not a PNG or JPEG image")
        return web.FileResponse(path, headers={"Content-Type": kind, "Cache-Control": "private, max-age=31536000"})
