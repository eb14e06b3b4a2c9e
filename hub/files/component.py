"""``Files``: uploads kept by sha256, their analysis (in a worker process) and the screening of uploads."""

from __future__ import annotations

from hub.api import Op
from hub.component import Component
from hub.config import HubConfig
from hub.store import Store

from .analyses import FileAnalyses
from .api import FilesApi
from .screen import UploadScreen
from .storage import FileStore
from .tables import TABLES



class Files(Component):
    name = "files"
    tables = TABLES

    def __init__(self, config: HubConfig, store: Store) -> None:
        self.store = FileStore(config.data_dir / "files", store, config.max_upload_mb)
        self.analyses = FileAnalyses(store, self.store)
        self.screen = UploadScreen(store, self.analyses)
        self._api = FilesApi(self.store, self.analyses, self.screen)

    def ops(self) -> list[Op]:
        return self._api.ops()

    async def stop(self) -> None:
        self.analyses.close()
