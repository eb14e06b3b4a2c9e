"""The numbered lines sent since the last sync, kept so that any of them can be sent again when the firmware asks.

A firmware asks for line N again (``Resend: N``) when N arrived damaged or out
of order; everything from N on is sent again. It can only be served while N is
still kept (``size`` lines back); a line asked for again and again is one the
firmware cannot take, and after ``max_tries`` in a row the job gives up rather
than loop forever.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import islice

from .window import Kind, Sent


@dataclass(frozen=True, slots=True)
class Rewind:
    first: int
    """The first line number sent again (0: the sync itself)."""
    lines: deque[Sent]


class History:
    def __init__(self, size: int = 1024, max_tries: int = 10) -> None:
        self.size = size
        self.max_tries = max_tries
        self._log: deque[Sent] = deque(maxlen=size)
        self.wanted: int | None = None
        """The line the firmware last asked for."""
        self._streak = 0

    def clear(self) -> None:
        self._log.clear()
        self.forget_requests()

    def forget_requests(self) -> None:
        self.wanted = None
        self._streak = 0

    def add(self, sent: Sent) -> None:
        self._log.append(sent)

    def rewind(self, wanted: int, sync_unanswered: bool) -> Rewind | str:
        """What to send again for ``Resend: wanted``, or why it cannot be done."""
        start = self._start(wanted, sync_unanswered)
        if start is None:
            oldest = self._log[0].line if self._log else None
            return (f"the firmware asked to resend line {wanted}, which is no longer in the host's history "
                    f"(oldest kept: {oldest})")
        target = self._log[start]
        self._streak = self._streak + 1 if wanted == self.wanted else 1
        self.wanted = wanted
        if self._streak > self.max_tries:
            return (f"the firmware rejected line {wanted} {self.max_tries} times in a row: "
                    f"{target.data.decode('utf-8', 'replace').strip()!r}")
        first = target.line if target.kind is not Kind.SYNC and target.line is not None else 0
        return Rewind(first, deque(islice(self._log, start, None)))

    def _start(self, wanted: int, sync_unanswered: bool) -> int | None:
        """Index in the log to replay from: the line asked for, or the sync while it is unanswered."""
        log = self._log
        for i in range(len(log) - 1, -1, -1):
            sent = log[i]
            if sent.kind is Kind.SYNC:
                # Before the firmware takes the sync, the number it asks for is from its old count.
                return i if sync_unanswered or wanted == 0 else None
            if sent.line == wanted:
                return i
        return None
