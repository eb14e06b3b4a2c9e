"""What is in flight: the lines sent and not yet answered, and how much of them can be in the receive buffer.

Counting is the host's only view into the firmware's receive buffer: every
line it receives gets exactly one answer, so the bytes of the lines sent and
not yet answered bound what the buffer holds. A line stops counting when the
host knows it left the buffer: ADVANCED_OK's ``B`` says how many of the lines
behind an answered one already sit in the firmware's command queue, and the
planner credit covers lines the firmware will take as they arrive.

Planner credit: the receive buffer only fills while the firmware is stuck in
a command, and Marlin is stuck only in a command that waits (G4, G28, M400, a
heating wait, a move into a full planner). An answer that reports ``P`` free
planner slots means the next ``P`` moves run without waiting; as long as every
line sent since is such a move or a command that never waits (the profile's
``streaming_commands``), each leaves the receive buffer as it arrives, so none
counts against it. The first line that could wait closes the credit until the
next such answer. This is what lets a 128-byte buffer keep a 250000-baud wire
full: the window becomes the planner, not the buffer.

A line is *stale* once the firmware asked for it (or a line before it) again:
its copy goes again, and the old one stays here only until its rejection comes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from itertools import islice


class Kind(IntEnum):
    JOB = 0
    COMMAND = 1
    POLL = 2
    SYNC = 3
    PROBE = 4
    URGENT = 5


MOVE, INSTANT, WAITS = 0, 1, 2
"""A line's flow: a planner move, a command that never waits, or one that may."""
_MOVES = frozenset((b"G0", b"G1"))
STREAMING_COMMANDS = (
    "G0", "G1", "G20", "G21", "G90", "G91", "G92", "M82", "M83", "M104", "M140", "M141", "M106", "M107",
    "M73", "M117", "M118", "M105", "M110", "M114", "M115", "M155", "M220", "M221", "M201", "M203", "M204",
    "M205", "M900",
)


@dataclass(slots=True, eq=False)
class Sent:
    data: bytes
    line: int | None
    kind: Kind
    index: int = -1
    """JOB: position in the job's feed."""
    reports: bool = False
    """Its answer is ``ok T:…`` (an M105), which identifies it."""
    flow: int = WAITS
    stale: bool = False
    """Asked for again: a copy goes again; this one waits only for its rejection."""
    tag: object = None
    """Whoever wants to hear when this line is answered (``HostEngine.acked``)."""
    offset: int = 0
    """Bytes that entered the window before this one: prefix sizes without a loop."""

    def command(self) -> bytes:
        """The command inside the framed line: without ``N<n> `` and ``*<xor>``."""
        data = self.data.rstrip(b"\n")
        if self.line is not None:
            data = data.split(b" ", 1)[-1].rsplit(b"*", 1)[0]
        return data


class Window:
    def __init__(self, streaming_commands: tuple[str, ...] = STREAMING_COMMANDS) -> None:
        self._instant = frozenset(c.encode() for c in streaming_commands) - _MOVES
        self._entries: deque[Sent] = deque()
        self.clear()

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
        self.stale = 0
        self._parsed = 0
        self._parsed_bytes = 0
        self._credit: int | None = None
        self._moves = 0
        self._waits = 0
        self._entered = 0
        self._queue_size = 1

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __iter__(self) -> Iterator[Sent]:
        return iter(self._entries)

    def __getitem__(self, i: int) -> Sent:
        return self._entries[i]

    def flow(self, command: bytes) -> int:
        word = command.split(b" ", 1)[0]
        return MOVE if word in _MOVES else INSTANT if word in self._instant else WAITS

    @property
    def buffered(self) -> int:
        """Bytes in flight that may be sitting in the firmware's receive buffer."""
        return self.bytes - self._parsed_bytes

    def command_in_flight(self, prefixes: tuple[bytes, ...]) -> bool:
        return any(not sent.stale and sent.command().startswith(prefixes) for sent in self._entries)

    def enter(self, sent: Sent) -> None:
        self._entries.append(sent)
        size = len(sent.data)
        sent.offset = self._entered
        self._entered += size
        self.bytes += size
        if sent.flow == MOVE:
            self._moves += 1
        elif sent.flow == WAITS:
            self._waits += 1
        if self._credit is not None and self._parsed == len(self._entries) - 1:
            if self._spend(sent):
                self._parsed += 1
                self._parsed_bytes += size
            else:
                self._credit = None

    def leave(self, i: int) -> Sent:
        """Entry ``i`` got its answer (an ok if it was good, its rejection if it was stale); it is returned."""
        entries = self._entries
        sent = entries[i]
        if i == 0:
            entries.popleft()
            if self._parsed:
                self._parsed -= 1
                self._parsed_bytes -= len(sent.data)
        else:
            del entries[i]
        self.bytes -= len(sent.data)
        if sent.flow == MOVE:
            self._moves -= 1
        elif sent.flow == WAITS:
            self._waits -= 1
        if sent.stale:
            self.stale -= 1
        return sent

    def oldest(self, *, stale: bool) -> int:
        """Index of the oldest entry that is (or is not) stale; the front when there is none."""
        for i, sent in enumerate(self._entries):
            if sent.stale is stale:
                return i
        return 0

    def find(self, line: int | None = None, *, reports: bool = False) -> int | None:
        """Index of the oldest good entry with this line number (or that reports temperatures)."""
        for i, sent in enumerate(self._entries):
            if not sent.stale and (sent.reports if reports else sent.line == line):
                return i
        return None

    def mark_stale(self, first: int) -> None:
        """Every numbered entry from line ``first`` on is asked for again."""
        for i, sent in enumerate(self._entries):
            if sent.line is not None and sent.line >= first and not sent.stale:
                sent.stale = True
                self.stale += 1
                self._parsed = min(self._parsed, i)
        self._parsed_bytes = sum(len(s.data) for s in islice(self._entries, self._parsed))
        self._credit = None

    def note_queue(self, free: int, planner_free: int | None) -> None:
        """ADVANCED_OK: the queue still had ``free`` slots (counting the command just answered), the planner P.

        The lines already in the queue left the receive buffer; so will the lines
        after them, as they arrive, while the planner credit lasts. The queue's size
        is learnt from the largest B seen (it never reports its full size while
        answering a command), so a guess only ever undercounts.
        """
        self._queue_size = max(self._queue_size, free + 1)
        queued = self._queue_size - free - 1
        entries = self._entries
        if planner_free is not None and not self.stale and not self._waits and self._moves == len(entries):
            # The usual case while streaming: only moves in flight, the first P of them run without waiting.
            if self._moves <= planner_free:
                self._credit = planner_free - self._moves
                self._parsed, self._parsed_bytes = len(entries), self.bytes
                return
            parsed = max(planner_free, min(queued, len(entries)))
            self._credit = None
            self._parsed = parsed
            self._parsed_bytes = entries[parsed].offset - entries[0].offset if parsed < len(entries) else self.bytes
            return
        self._credit = planner_free
        parsed = parsed_bytes = 0
        for i, sent in enumerate(self._entries):
            if sent.stale:
                self._credit = None
                break
            if not self._spend(sent):
                self._credit = None
                if i >= queued:
                    break
            parsed += 1
            parsed_bytes += len(sent.data)
        self._parsed, self._parsed_bytes = parsed, parsed_bytes

    def _spend(self, sent: Sent) -> bool:
        """Whether ``sent`` runs without waiting on the credit left; spends a planner slot for a move."""
        credit = self._credit
        if credit is None or sent.flow == WAITS:
            return False
        if sent.flow == MOVE:
            if credit <= 0:
                return False
            self._credit = credit - 1
        return True
