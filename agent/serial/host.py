"""The host side of the serial G-code protocol, without any I/O: lines in, bytes out.

``take()`` returns every framed line that fits the firmware's receive buffer;
``receive(line)`` digests one line the firmware printed. The driver only moves
bytes between these and the port, so the whole protocol can be tested with
plain strings.

Flow control is by counting: every line the firmware receives gets exactly one
``ok``, so the bytes of the lines sent and not yet answered bound what sits in
its receive buffer, and we keep that at or under ``rx_buffer``. With
ADVANCED_OK (``ok N<line> P<planner> B<queue>``) an ok names its line, so an ok
lost on the wire costs nothing, and ``B`` says how many of the lines behind it
already left the receive buffer for the command queue; those stop counting.

Resends: a bad line makes the firmware print ``Resend: N`` for it *and* for
every line already in flight behind it (each of those is out of sequence).
Acting on the first, every line in flight numbered N or later becomes *stale*:
it is sent again from the history, and its old copy waits in the window only
for its rejection. A later ``Resend: N`` while stale copies remain is one of
those rejections, not news. This needs no knowledge of which ``ok`` answers
which good line, so it holds both for firmware that answers strictly in order
and for Marlin, which rejects a line as soon as it parses it, ahead of the
``ok`` of commands still queued.

An answer that names its question resynchronises the window: ``ok T:…``
answers the oldest M105 in flight, an ADVANCED_OK names its line; lines before
them whose ``ok`` never came are counted in ``lost_oks`` and let go.

Planner credit (ADVANCED_OK only): the receive buffer only fills while the
firmware is stuck in a command, and Marlin is stuck only in a command that
waits (G4, G28, M400, a heating wait, a move into a full planner). An ok that
reports ``P`` free planner slots means the next ``P`` moves run without
waiting; as long as every line sent since is such a move or a command that
never waits (the profile's ``streaming_commands``), each leaves the receive
buffer as it arrives, so none of them counts against ``rx_buffer``. The first
line that could wait closes the credit until the next such ok. This is what
lets a 128-byte buffer keep a 250000-baud wire full: the window becomes the
planner, not the buffer.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from enum import IntEnum
from itertools import chain, islice
from typing import NamedTuple, Protocol

from .gcode import checksum, frame
from .responses import MARLIN, Kind as ReplyKind, OK, Reply


class Kind(IntEnum):
    JOB = 0
    COMMAND = 1
    POLL = 2
    SYNC = 3
    PROBE = 4
    URGENT = 5


@dataclass(slots=True, eq=False)
class Sent:
    data: bytes
    line: int | None
    kind: Kind
    index: int = -1
    """JOB: position in the job's feed."""
    reports: bool = False
    """Its answer is ``ok T:…`` (an M105), which identifies it."""
    flow: int = 2
    """_MOVE, _INSTANT or _WAITS: whether the firmware may get stuck on it."""
    stale: bool = False
    """Rejected (or to be): a copy goes again; this one waits only for its rejection."""
    tag: object = None
    """Whoever wants to hear when this line is answered (``HostEngine.acked``)."""


class Outcome(NamedTuple):
    reply: Reply
    job_done: bool = False
    failure: str | None = None


class Feed(Protocol):
    """A job: ``count`` commands, iterated as (command bytes, XOR of them)."""

    count: int

    def __iter__(self) -> Iterator[tuple[bytes, int]]: ...


_SYNC_COMMAND = b"M110 N0"
_MOVE, _INSTANT, _WAITS = 0, 1, 2
_MOVES = frozenset((b"G0", b"G1"))
STREAMING_COMMANDS = (
    "G0", "G1", "G20", "G21", "G90", "G91", "G92", "M82", "M83", "M104", "M140", "M141", "M106", "M107",
    "M73", "M117", "M118", "M105", "M110", "M114", "M115", "M155", "M220", "M221", "M201", "M203", "M204",
    "M205", "M900",
)
_M73 = re.compile(rb"M73(?:\s+P(\d+(?:\.\d*)?))?(?:\s+R(\d+))?")


class HostEngine:
    def __init__(
        self,
        rx_buffer: int,
        *,
        checksums: bool = True,
        history: int = 1024,
        max_tries: int = 10,
        one_in_flight: bool = False,
        resend_ok: bool = True,
        classify: Callable[[str], Reply] = MARLIN.classify,
        temperature_command: str = "M105",
        streaming_commands: tuple[str, ...] = STREAMING_COMMANDS,
    ) -> None:
        self.rx_buffer = rx_buffer
        self.checksums = checksums
        self.history = history
        self.max_tries = max_tries
        self.one_in_flight = one_in_flight
        self.resend_ok = resend_ok
        self.classify = classify
        self._report_command = temperature_command.encode()
        self._instant = frozenset(c.encode() for c in streaming_commands) - _MOVES
        self._log: deque[Sent] = deque(maxlen=history)
        self._window: deque[Sent] = deque()
        self._replay: deque[Sent] = deque()
        self._oob: deque[tuple[bytes, Kind, object]] = deque()
        self.acked: list[object] = []
        """Tags of tagged lines answered since the caller last cleared this."""
        self._staged: Sent | None = None
        self._feed: Iterator[tuple[bytes, int]] | None = None
        self._peek: tuple[bytes, int] | None = None
        self._queue_size = 1
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.window_bytes = 0
        self._parsed = 0
        self._parsed_bytes = 0
        self._credit: int | None = None
        self._moves = 0
        self._waits = 0
        self._stale = 0
        self._pending_rejections = 0
        self._next_line = 0
        self._numbered = False
        self._feed_pos = 0
        self._feed_end = 0
        self._held = False
        self._wanted: int | None = None
        self._streak = 0
        self._polls = 0
        self._job_in_flight = 0
        self._syncs_in_flight = 0
        self.lines_done = 0
        self.job_lines = 0
        self.resends = 0
        self.ignored_resends = 0
        self.unexpected_oks = 0
        self.lost_oks = 0
        self.bytes_sent = 0
        self.planner_free: int | None = None
        self.m73_percent: float | None = None
        self.m73_remaining_min: int | None = None

    # ------------------------------------------------------------------ policy's controls

    def reset(self) -> None:
        """Forget everything in flight: the port closed, the firmware restarted or halted."""
        self._log.clear()
        self._window.clear()
        self._replay.clear()
        self._oob.clear()
        self.acked.clear()
        self._staged = None
        self._feed = None
        self._peek = None
        self._reset_counters()

    def sync(self) -> None:
        """Queue ``N0 M110 N0``: from it on every line is numbered, starting again at 1.

        The sync goes alone: only once everything before it is answered, and nothing
        new follows until it is answered. Any resend request meanwhile is then about
        the sync itself, whatever numbering the firmware had before.
        """
        if self.checksums:
            self._queue(_SYNC_COMMAND, Kind.SYNC)

    def command(self, text: str, kind: Kind = Kind.COMMAND, *, first: bool = False, tag: object = None) -> None:
        """Queue a command ahead of the job's next line (scripts, polls); ``first``: ahead of those too.

        A ``tag`` lands in ``acked`` once the firmware answers the command.
        """
        if kind is Kind.POLL:
            self._polls += 1
        if first:
            self._oob.appendleft((text.encode(), kind, tag))
            self._drop_staged()
        else:
            self._queue(text.encode(), kind, tag)

    def poll(self, text: str) -> bool:
        """Queue a temperature poll unless one is already waiting; True if queued."""
        if self._polls:
            return False
        self.command(text, Kind.POLL)
        return True

    def urgent(self, text: str) -> bytes:
        """Frame ``text`` unnumbered for the port now, past the window and the queue (M108, M410, M112).

        Only for firmware that acts on it as it arrives (Marlin's emergency parser);
        it still gets an ``ok`` in turn, so it joins the window.
        """
        sent = Sent(text.encode() + b"\n", None, Kind.URGENT)
        self._enter(sent)
        return sent.data

    def probe(self, text: str) -> bytes:
        """Frame ``text`` (an M105) for the port now, past the window: the question a silent firmware must answer.

        Numbered when nothing waits to be sent again, so a line lost on its way is
        asked for; its ``ok T:…`` then accounts for every ok lost before it.
        """
        data = text.encode()
        if self._numbered and not self._replay:
            sent = Sent(frame(self._next_line, data, checksum(data)), self._next_line, Kind.PROBE, reports=True)
            self._next_line += 1
            self._log.append(sent)
            self._drop_staged()
        else:
            sent = Sent(data + b"\n", None, Kind.PROBE, reports=True)
        self._enter(sent)
        return sent.data

    def start_job(self, job: Feed, tail: list[str] | tuple[str, ...] = ()) -> None:
        """Stream ``job`` after a sync; ``tail`` lines follow it and belong to it, but not to its count."""
        if self._feed is not None:
            raise RuntimeError("a job is already streaming")
        extra = [(t.encode(), checksum(t.encode())) for t in tail]
        self.job_lines = job.count
        self.sync()
        self._feed = chain(iter(job), extra)
        self._peek = None
        self._feed_end = job.count + len(extra)
        self._feed_pos = 0
        self.lines_done = 0
        self.resends = 0
        self._streak = 0
        self._wanted = None
        self._held = False
        self.m73_percent = self.m73_remaining_min = None
        self._drop_staged(Kind.JOB)

    def hold(self, held: bool) -> None:
        """Stop (or go on) taking new job lines; lines already sent are still answered and replayed."""
        self._held = held
        self._drop_staged(Kind.JOB)

    def drop_job(self) -> None:
        """Send no more of the job (cancel). Lines already sent may still need replaying."""
        self._feed = None
        self._peek = None
        self._held = False
        self._drop_staged(Kind.JOB)

    @property
    def job_active(self) -> bool:
        return self._feed is not None

    @property
    def busy(self) -> bool:
        """Anything sent and unanswered, or waiting to be sent."""
        return bool(self._window or self._replay or self._oob or self._staged or self._feed is not None)

    @property
    def awaiting(self) -> bool:
        """Anything sent and unanswered: the firmware owes us a reply."""
        return bool(self._window)

    @property
    def poll_pending(self) -> bool:
        return self._polls > 0

    @property
    def lines_sent(self) -> int:
        return min(self._feed_pos, self.job_lines)

    @property
    def in_flight(self) -> int:
        return len(self._window)

    def in_flight_command(self, prefixes: tuple[str, ...]) -> bool:
        """Whether a command starting with one of ``prefixes`` (e.g. M109) is sent and not yet answered."""
        wanted = tuple(p.encode() for p in prefixes)
        for sent in self._window:
            if not sent.stale and _command_of(sent).startswith(wanted):
                return True
        return False

    # ------------------------------------------------------------------ the wire

    def take(self) -> bytes:
        """Every line that fits in the firmware's buffer now, framed, in order (b"" when none)."""
        room = self.rx_buffer - self.window_bytes + self._parsed_bytes
        chunks: list[bytes] = []
        while True:
            replaying = bool(self._replay)
            sent = self._replay[0] if replaying else (self._staged or self._stage())
            if sent is None:
                break
            if not replaying and (self._syncs_in_flight or (sent.kind is Kind.SYNC and self._window)):
                break
            if self._window and (self.one_in_flight or len(sent.data) > room):
                # A line bigger than the whole buffer still goes, alone, or it would never go.
                break
            if replaying:
                # A fresh entry: the stale copy may still be in the window, waiting for its rejection.
                sent = replace(self._replay.popleft(), stale=False)
            else:
                self._commit_new(sent)
            self._enter(sent)
            # Not just minus this line: a line the planner credit covers takes no room.
            room = self.rx_buffer - self.window_bytes + self._parsed_bytes
            chunks.append(sent.data)
        return b"".join(chunks)

    def receive(self, line: str) -> Outcome:
        reply = self.classify(line)
        kind = reply.kind
        if kind is ReplyKind.OK:
            return self._on_ok(reply)
        if kind is ReplyKind.RESEND:
            return self._on_resend(reply)
        if kind is ReplyKind.SKIP and self._window:
            # Repetier drops a duplicate line it already took and says so; an ok follows, for that line.
            self._pending_rejections += 1
        return Outcome(reply)

    # ------------------------------------------------------------------ sending

    def _queue(self, data: bytes, kind: Kind, tag: object = None) -> None:
        self._oob.append((data, kind, tag))
        self._drop_staged(Kind.JOB)

    def _drop_staged(self, kind: Kind | None = None) -> None:
        if self._staged is not None and (kind is None or self._staged.kind is kind):
            self._staged = None

    def _stage(self) -> Sent | None:
        if self._oob:
            data, kind, tag = self._oob[0]
            self._staged = self._frame(data, checksum(data), kind, -1)
            self._staged.tag = tag
        elif self._feed is not None and not self._held and self._feed_pos < self._feed_end:
            if self._peek is None:
                self._peek = next(self._feed, None)
                if self._peek is None:
                    # The file shrank since it was checked: end the job with what was there.
                    self._feed_end = self._feed_pos
                    return None
            data, data_xor = self._peek
            self._staged = self._frame(data, data_xor, Kind.JOB, self._feed_pos)
        return self._staged

    def _frame(self, data: bytes, data_xor: int, kind: Kind, index: int) -> Sent:
        reports = kind is Kind.POLL or self._report_command in data
        word = data.split(b" ", 1)[0]
        flow = _MOVE if word in _MOVES else _INSTANT if word in self._instant else _WAITS
        if kind is Kind.SYNC:
            return Sent(frame(0, data, data_xor), 0, kind, flow=_INSTANT)
        if self._numbered:
            return Sent(frame(self._next_line, data, data_xor), self._next_line, kind, index, reports, flow)
        return Sent(data + b"\n", None, kind, index, reports, flow)

    def _commit_new(self, sent: Sent) -> None:
        self._staged = None
        if sent.kind is Kind.JOB:
            self._feed_pos += 1
            self._peek = None
        else:
            self._oob.popleft()
            if sent.kind is Kind.POLL:
                self._polls -= 1  # counted again as it enters the window
        if sent.kind is Kind.SYNC:
            self._numbered = True
            self._next_line = 1
        elif sent.line is not None:
            self._next_line += 1
        if sent.line is not None:
            self._log.append(sent)

    def _enter(self, sent: Sent) -> None:
        self._window.append(sent)
        size = len(sent.data)
        self.window_bytes += size
        self.bytes_sent += size
        if sent.flow == _MOVE:
            self._moves += 1
        elif sent.flow == _WAITS:
            self._waits += 1
        if self._credit is not None and self._parsed == len(self._window) - 1:
            if self._spend(sent):
                self._parsed += 1
                self._parsed_bytes += size
            else:
                self._credit = None
        if sent.kind is Kind.JOB:
            self._job_in_flight += 1
        elif sent.kind is Kind.POLL:
            self._polls += 1
        elif sent.kind is Kind.SYNC:
            self._syncs_in_flight += 1

    # ------------------------------------------------------------------ answers

    def _on_ok(self, reply: Reply) -> Outcome:
        window = self._window
        if not window:
            self.unexpected_oks += 1
            return Outcome(reply)
        if reply is OK and not self._pending_rejections and not window[0].stale:
            self._leave(0)
        elif self._pending_rejections:
            self._pending_rejections -= 1
            self._leave(self._oldest(stale=True))
        elif reply.line is not None and self.checksums:
            self._ack_through(lambda s: s.line == reply.line)
        elif reply.temperatures and any(s.reports and not s.stale for s in window):
            self._ack_through(lambda s: s.reports)
        else:
            self._leave(self._oldest(stale=False))
        if reply.buffer_free is not None:
            self.planner_free = reply.planner_free
            self._note_queue(reply.buffer_free, reply.planner_free)
        if self._feed is not None and self._feed_pos >= self._feed_end and not self._job_in_flight \
                and not self._replay and self._peek is None:
            # Every job line has been answered and none is waiting to be sent again: all were taken.
            self._feed = None
            self.lines_done = self.job_lines
            return Outcome(reply, job_done=True)
        return Outcome(reply)

    def _oldest(self, *, stale: bool) -> int:
        """Index of the oldest entry that is (or is not) stale; the front when there is none."""
        for i, sent in enumerate(self._window):
            if sent.stale is stale:
                return i
        return 0

    def _ack_through(self, match: Callable[[Sent], bool]) -> None:
        """The ok answers the oldest good entry that ``match``es; everything before it was answered too."""
        for i, sent in enumerate(self._window):
            if not sent.stale and match(sent):
                for _ in range(i):
                    if not self._window[0].stale:
                        self.lost_oks += 1
                    self._leave(0)
                self._leave(0)
                return
        # It names nothing we wait for (a late or repeated ok): say so, change nothing.
        self.unexpected_oks += 1

    def _leave(self, i: int) -> None:
        """Entry ``i`` got its answer: an ok if it was good, its rejection if it was stale."""
        window = self._window
        sent = window[i]
        if i == 0:
            window.popleft()
            if self._parsed:
                self._parsed -= 1
                self._parsed_bytes -= len(sent.data)
        else:
            del window[i]
        self.window_bytes -= len(sent.data)
        if sent.flow == _MOVE:
            self._moves -= 1
        elif sent.flow == _WAITS:
            self._waits -= 1
        if sent.stale:
            self._stale -= 1
        if sent.tag is not None and not sent.stale:
            self.acked.append(sent.tag)
        if sent.kind is Kind.JOB:
            self._job_in_flight -= 1
            if not sent.stale:
                if sent.index >= self.lines_done:
                    self.lines_done = min(sent.index + 1, self.job_lines)
                if b"M73" in sent.data:
                    self._on_m73(sent.data)
        elif sent.kind is Kind.POLL:
            self._polls -= 1
        elif sent.kind is Kind.SYNC:
            self._syncs_in_flight -= 1

    def _note_queue(self, free: int, planner_free: int | None) -> None:
        """ADVANCED_OK: the queue still had ``free`` slots (counting the command just answered), the planner P.

        The lines already in the queue left the receive buffer. So will the lines
        after them, as they arrive, while the planner credit lasts (see the module's
        notes). The queue's size is learnt from the largest B seen (it never reports
        its full size while answering a command), so a guess only ever undercounts.
        """
        self._queue_size = max(self._queue_size, free + 1)
        if planner_free is not None and not self._stale and not self._waits and self._moves <= planner_free:
            # The usual case while streaming moves: everything in flight runs without waiting.
            self._credit = planner_free - self._moves
            self._parsed, self._parsed_bytes = len(self._window), self.window_bytes
            return
        queued = self._queue_size - free - 1
        self._credit = planner_free
        parsed = parsed_bytes = 0
        for i, sent in enumerate(self._window):
            if sent.stale:
                self._credit = None
                break
            safe = self._spend(sent)
            if not safe:
                self._credit = None
                if i >= queued:
                    break
            parsed += 1
            parsed_bytes += len(sent.data)
        self._parsed, self._parsed_bytes = parsed, parsed_bytes

    def _spend(self, sent: Sent) -> bool:
        """Whether ``sent`` runs without waiting on the credit left; spends a planner slot for a move."""
        credit = self._credit
        if credit is None or sent.flow == _WAITS:
            return False
        if sent.flow == _MOVE:
            if credit <= 0:
                return False
            self._credit = credit - 1
        return True

    def _on_m73(self, data: bytes) -> None:
        match = _M73.search(data)
        if match and match.group(1):
            self.m73_percent = min(100.0, float(match.group(1)))
        if match and match.group(2):
            self.m73_remaining_min = int(match.group(2))

    # ------------------------------------------------------------------ resends

    def _on_resend(self, reply: Reply) -> Outcome:
        wanted = reply.line
        assert wanted is not None
        if not self._numbered:
            return Outcome(reply, failure=f"the firmware asked to resend line {wanted} but no line was numbered")
        if wanted == self._wanted and self._stale > self._pending_rejections:
            self.ignored_resends += 1
            self._rejected()
            return Outcome(reply)
        start = self._rewind_point(wanted)
        if start is None:
            oldest = self._log[0].line if self._log else None
            return Outcome(reply, failure=f"the firmware asked to resend line {wanted}, which is no longer "
                                          f"in the host's history (oldest kept: {oldest})")
        target = self._log[start]
        # The same line asked for again and again: a line the firmware cannot take (cut short, or a bad cable).
        self._streak = self._streak + 1 if wanted == self._wanted else 1
        self._wanted = wanted
        if self._streak > self.max_tries:
            return Outcome(reply, failure=f"the firmware rejected line {wanted} {self.max_tries} times in a row: "
                                          f"{target.data.decode('utf-8', 'replace').strip()!r}")
        first = target.line if target.kind is not Kind.SYNC else 0
        for i, sent in enumerate(self._window):
            if sent.line is not None and sent.line >= first and not sent.stale:
                sent.stale = True
                self._stale += 1
                self._parsed = min(self._parsed, i)
        self._parsed_bytes = sum(len(s.data) for s in islice(self._window, self._parsed))
        self._credit = None
        self._replay = deque(islice(self._log, start, None))
        self.resends += 1
        self._rejected()
        return Outcome(reply)

    def _rejected(self) -> None:
        """A rejection was announced: its ok follows (Marlin), or there is none and the line is let go now."""
        if self.resend_ok:
            self._pending_rejections += 1
        elif self._window:
            self._leave(self._oldest(stale=True))

    def _rewind_point(self, wanted: int) -> int | None:
        """Index in the log to replay from: the line asked for, or the sync while it is unanswered."""
        log = self._log
        for i in range(len(log) - 1, -1, -1):
            sent = log[i]
            if sent.kind is Kind.SYNC:
                # Before the firmware takes the sync, the number it asks for is from its old count.
                return i if self._syncs_in_flight or wanted == 0 else None
            if sent.line == wanted:
                return i
        return None


def _command_of(sent: Sent) -> bytes:
    """The command inside a framed line: without ``N<n> `` and ``*<xor>``."""
    data = sent.data.rstrip(b"\n")
    if sent.line is not None:
        data = data.split(b" ", 1)[-1].rsplit(b"*", 1)[0]
    return data

