"""Printing from a serial printer's own SD card: list it (M20), open a file (M23), ask where it is (M27).

The firmware reads the file; the host asks and watches. The device decides
when (only while idle, or while the card prints); this does the asking and
follows the answers (``agent.serial.sdcard``).
"""

from __future__ import annotations

import asyncio

from agent.serial.connection import Connection
from agent.serial.host import HostEngine
from agent.serial.responses import Reply
from agent.serial.sdcard import SdFile, SdTracker

from .base import CommandRejected

ANSWER_S = 10.0


class SdCard:
    def __init__(self, engine: HostEngine, connection: Connection) -> None:
        self._engine = engine
        self._connection = connection
        self.tracker = SdTracker()
        self._position_asked = False

    async def files(self) -> list[SdFile]:
        await self._ask("M20", "list_end")
        return list(self.tracker.files)

    async def select(self, name: str) -> None:
        if await self._ask(f"M23 {name}", "opened", "open_failed") == "open_failed":
            raise CommandRejected(f"the printer's SD card cannot open {name!r}")

    def reconnected(self) -> None:
        self._position_asked = False

    def ask_position(self) -> None:
        """M27, unless one is still unanswered."""
        if not self._position_asked:
            self._position_asked = True
            self._engine.command("M27")

    def heard(self, reply: Reply) -> str:
        """An SD reply: what happened (``done``, ``progress``…, see ``SdTracker.on_reply``)."""
        event = self.tracker.on_reply(reply)
        if event in ("progress", "idle"):
            self._position_asked = False
        return event

    async def _ask(self, command: str, *answers: str) -> str:
        answer = self.tracker.expect(*answers)
        self._engine.command(command)
        self._connection.pump()
        try:
            async with asyncio.timeout(ANSWER_S):
                return await answer
        except TimeoutError:
            raise CommandRejected(f"the printer did not answer {command!r}") from None
