"""The operator's console on a printer: lines sent between jobs, and the firmware's words collected for them.

Each request tags its lines in the engine; it is done when the engine has seen
an answer to every one of them. Everything the firmware prints meanwhile is
its output (autoreported temperatures aside), because a firmware answers in
order and the console's lines are the only ones then.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .responses import Kind

MAX_LINES = 500


class ConsoleInterrupted(Exception):
    """The printer stopped, restarted or went away before the console's lines were done."""


@dataclass(slots=True, eq=False)
class ConsoleRequest:
    command_id: str
    future: asyncio.Future[None]
    remaining: int
    output: list[str] = field(default_factory=list)


class Console:
    def __init__(self) -> None:
        self.requests: list[ConsoleRequest] = []

    def open(self, command_id: str, lines: int) -> ConsoleRequest:
        request = ConsoleRequest(command_id, asyncio.get_running_loop().create_future(), lines)
        self.requests.append(request)
        return request

    def close(self, request: ConsoleRequest) -> list[str]:
        self.requests.remove(request)
        return request.output[:MAX_LINES]

    def heard(self, text: str, kind: Kind) -> None:
        if self.requests and kind is not Kind.TEMPERATURE:
            self.requests[0].output.append(text)

    def answered(self, tags: list[object]) -> None:
        """The engine's ``acked`` tags: each is one line of a request answered."""
        for request in tags:
            if isinstance(request, ConsoleRequest):
                request.remaining -= 1
                if not request.remaining and not request.future.done():
                    request.future.set_result(None)
        tags.clear()

    def interrupt(self, reason: str) -> None:
        for request in self.requests:
            if not request.future.done():
                request.future.set_exception(ConsoleInterrupted(reason))
