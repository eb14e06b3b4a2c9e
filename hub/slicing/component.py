"""``Slicing``: meshes sliced to G-code with PrusaSlicer, with the farm's own profiles."""

from __future__ import annotations

from pathlib import Path

from hub.api import Op
from hub.component import Component
from hub.files import Files
from hub.store import Store

from .jobs import SliceJobs
from .profiles import SlicingProfiles
from .tables import TABLES


class Slicing(Component):
    name = "slicing"
    tables = TABLES

    def __init__(self, data_dir: Path, store: Store, files: Files) -> None:
        self.profiles = SlicingProfiles(store, data_dir / "slicing-profiles")
        self.jobs = SliceJobs(store, files.store, files.analyses, self.profiles, data_dir / "slicing")

    def ops(self) -> list[Op]:
        return [*self.profiles.ops(), *self.jobs.ops()]

    async def start(self) -> None:
        # Slices a stopped hub left queued or running start again.
        self.jobs.resume()

    async def stop(self) -> None:
        await self.jobs.stop()
