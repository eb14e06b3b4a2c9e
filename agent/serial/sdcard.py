"""Following a printer's SD card from its replies: the file list (M20), the opened file (M23), the position (M27)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from .responses import Reply

_OPENED = re.compile(r"(?P<name>.+?)\s+Size:\s*(?P<size>\d+)")
_POSITION = re.compile(r"(\d+)\s*/\s*(\d+)")


@dataclass(frozen=True, slots=True)
class SdFile:
    name: str
    size: int | None = None


@dataclass(slots=True)
class SdTracker:
    files: list[SdFile] = field(default_factory=list)
    opened: SdFile | None = None
    position: tuple[int, int] | None = None
    """(bytes done, bytes in the file) from the last M27."""
    _listing: list[SdFile] | None = None
    _waiters: list[tuple[tuple[str, ...], asyncio.Future[str]]] = field(default_factory=list)

    def expect(self, *answers: str) -> asyncio.Future[str]:
        """A future that gets the name of the first of ``answers`` to come (``list_end``, ``opened``…)."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.append((answers, future))
        future.add_done_callback(lambda f: self._waiters.remove((answers, f)))
        return future

    def on_reply(self, reply: Reply) -> str:
        """Digest one SD reply; returns what happened: the reply's name (``list_end``, ``opened``, ``done``…)."""
        name = reply.name
        for answers, future in list(self._waiters):
            if name in answers and not future.done():
                future.set_result(name)
        if name == "list_begin":
            self._listing = []
        elif name == "list_end":
            self.files, self._listing = self._listing or [], None
        elif name == "opened":
            match = _OPENED.match(reply.message)
            self.opened = SdFile(match["name"], int(match["size"])) if match else SdFile(reply.message)
            self.position = (0, self.opened.size or 0)
        elif name == "progress":
            match = _POSITION.search(reply.message)
            if match:
                self.position = (int(match.group(1)), int(match.group(2)))
        return name

    def on_other(self, text: str) -> bool:
        """A line inside a file list (``NAME.GCO 1234``); True if it was one."""
        if self._listing is None:
            return False
        name, _, size = text.strip().rpartition(" ")
        if name and size.isdigit():
            self._listing.append(SdFile(name, int(size)))
        else:
            self._listing.append(SdFile(text.strip()))
        return True

    @property
    def fraction(self) -> float | None:
        if self.position is None or not self.position[1]:
            return None
        done, total = self.position
        return min(1.0, done / total)
