"""Refusing bad models at upload: a file named like a mesh must be one the analysis accepts.

The upload is analysed (in the analysis worker, with its limits on size,
zip members and unpacked bytes) before the HTTP answer, so a hostile or broken
STL, 3MF or OBJ gets a 4xx with the reason while the person is still there,
not a failed job later. A refused upload that brought new bytes is forgotten
again; bytes stored before (by an earlier, referenced upload) are kept.
"""

from __future__ import annotations

import sqlite3

import structlog

from hub.api.problems import ApiProblem
from hub.store import Store

from .analyses import FileAnalyses, kind_of
from .storage import StoredFile

log = structlog.get_logger("farmhand.hub.upload_screen")


class UploadScreen:
    def __init__(self, store: Store, analyses: FileAnalyses) -> None:
        self.store = store
        self.analyses = analyses
        self.refused = 0

    async def __call__(self, stored: StoredFile) -> None:
        if kind_of(stored.name) != "mesh":
            return
        row = await self.analyses.ensure(stored.sha256)
        if row["ok"]:
            return
        self.refused += 1
        if stored.created:
            self._forget(stored.sha256)
        log.info("upload_refused", sha256=stored.sha256, name=stored.name, reason=row["error"])
        raise ApiProblem(422, "Invalid file", row["error"])

    def _forget(self, sha: str) -> None:
        try:
            with self.store.transaction() as db:
                db.execute("DELETE FROM file_analyses WHERE sha256 = ?", (sha,))
                db.execute("DELETE FROM files WHERE sha256 = ?", (sha,))
        except sqlite3.IntegrityError:
            return  # something took it up meanwhile: it stays, still refused for printing
        self.analyses.files.path(sha).unlink(missing_ok=True)
