"""HTTP operations on files: upload (screened), list, download, and each file's analysis and thumbnail."""

from __future__ import annotations

import base64

from aiohttp import web

from hub.api import CHUNK, ApiProblem, Items, Op, PageQuery, listed, multipart_reader, respond

from .analyses import FileAnalyses
from .schemas import FileAnalysis, FileInfo
from .screen import UploadScreen
from .storage import FileStore, StoredFile, content_disposition, too_large


def _file_info(row: dict | StoredFile) -> FileInfo:  # type: ignore[type-arg]
    data = row if isinstance(row, dict) else row.__dict__
    return FileInfo(sha256=data["sha256"], name=data["name"], size=data["size"], created_at=data["created_at"],
                    url=f"/api/v1/files/{data['sha256']}")


class FilesApi:
    def __init__(self, files: FileStore, analyses: FileAnalyses, screen: UploadScreen) -> None:
        self.files = files
        self.analyses = analyses
        self.screen = screen

    def ops(self) -> list[Op]:
        return [
            Op("POST", "/api/v1/files", self.upload, response=FileInfo, status=201,
               body_type="application/octet-stream",
               summary="Upload a file (raw body with ?name=, or multipart field 'file')"),
            Op("GET", "/api/v1/files", self.list_files, response=Items[FileInfo], query=PageQuery, summary="Files"),
            Op("GET", "/api/v1/files/{sha256}", self.download, response_type="application/octet-stream",
               summary="A file's bytes (agents fetch job files here)"),
            Op("GET", "/api/v1/files/{sha256}/analysis", self.get_analysis, response=FileAnalysis, tags=("files",),
               summary="What the file holds: G-code (layers, filament, time, thumbnails) or a mesh (size, fits)"),
            Op("GET", "/api/v1/files/{sha256}/thumbnail", self.get_thumbnail, response_type="image/png",
               tags=("files",), summary="The largest PNG thumbnail the G-code carries"),
        ]

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

    async def get_analysis(self, request: web.Request) -> web.Response:
        kind, data = await self.analyses.body(request.match_info["sha256"])
        if kind == "gcode":
            # The image bytes are served by /thumbnail; the list says which there are.
            data["thumbnails"] = [{k: v for k, v in t.items() if k != "data"} for t in data["thumbnails"]]
        # The stored analysis is a dump of the same models FileAnalysis documents: sent as stored.
        return respond({"kind": kind, **data})

    async def get_thumbnail(self, request: web.Request) -> web.Response:
        kind, data = await self.analyses.body(request.match_info["sha256"])
        pngs = [t for t in data.get("thumbnails", []) if t["format"] == "PNG"]
        if not pngs:
            raise ApiProblem(404, "No thumbnail", "the file carries no PNG thumbnail")
        best = max(pngs, key=lambda t: t["width"] * t["height"])
        return web.Response(body=base64.b64decode(best["data"]), content_type="image/png")
