"""The host side of the serial G-code protocol, without any I/O: lines in, bytes out.

``take()`` returns every framed line that fits the firmware's receive buffer;
``receive(line)`` digests one line the firmware printed. The driver only moves
bytes between these and the port, so the whole protocol can be tested with
plain strings. What is in flight, and how much of it the receive buffer can
hold, is ``window``'s business.

Resends: a bad line makes the firmware print ``Resend: N`` for it *and* for
every line already in flight behind it (each of those is out of sequence).
Acting on the first, every line in flight numbered N or later becomes stale:
it is sent again from the history, and its old copy waits only for its
rejection. A later ``Resend: N`` while stale copies remain is one of those
rejections, not news. This needs no knowledge of which ``ok`` answers which
good line, so it holds both for firmware that answers strictly in order and
for Marlin, which rejects a line as soon as it parses it, ahead of the ``ok``
of commands still queued.

An answer that names its question resynchronises the window: ``ok T:…``
answers the oldest M105 in flight, an ADVANCED_OK (or Repetier) ok names its
line; lines before them whose ``ok`` never came are counted in ``lost_oks``
and let go. A firmware that went quiet is asked (``probe``) for such an answer.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from itertools import chain
from typing import NamedTuple, Protocol

from .gcode import checksum, frame
from .history import History
from .responses import MARLIN, Kind as ReplyKind, OK, Reply
from .window import INSTANT, STREAMING_COMMANDS, Kind, Sent, Window

__all__ = ["STREAMING_COMMANDS", "Feed", "HostEngine", "Kind", "Outcome", "Sent"]


class Outcome(NamedTuple):
    reply: Reply
    job_done: bool = False
    failure: str | None = None


class Feed(Protocol):
    """A job: ``count`` commands, iterated as (command bytes, XOR of them)."""

    count: int

    def __iter__(self) -> Iterator[tuple[bytes, int]]: ...


_SYNC_COMMAND = b"M110 N0"
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
        self.one_in_flight = one_in_flight
        self.resend_ok = resend_ok
        self.classify = classify
        self._report_command = temperature_command.encode()
        self._history = History(history, max_tries)
        self._window = Window(streaming_commands)
        self._replay: deque[Sent] = deque()
        self._oob: deque[tuple[bytes, Kind, object]] = deque()
        self.acked: list[object] = []
        """Tags of tagged lines answered since the caller last cleared this."""
        self._staged: Sent | None = None
        self._feed: Iterator[tuple[bytes, int]] | None = None
        self._peek: tuple[bytes, int] | None = None
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._pending_rejections = 0
        self._next_line = 0
        self._numbered = False
        self._feed_pos = 0
        self._feed_end = 0
        self._held = False
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
        self._history.clear()
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
            self._history.add(sent)
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
        self._history.forget_requests()
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

    @property
    def window_bytes(self) -> int:
        return self._window.bytes

    def answering(self) -> Sent | None:
        """The line the firmware answers next (the oldest good one in flight), for a firmware that answers in order."""
        window = self._window
        if not window:
            return None
        sent = window[window.oldest(stale=False)]
        return None if sent.stale else sent

    def in_flight_command(self, prefixes: tuple[str, ...]) -> bool:
        """Whether a command starting with one of ``prefixes`` (e.g. M109) is sent and not yet answered."""
        return self._window.command_in_flight(tuple(p.encode() for p in prefixes))

    # ------------------------------------------------------------------ the wire

    def take(self) -> bytes:
        """Every line that fits in the firmware's buffer now, framed, in order (b"" when none)."""
        window = self._window
        room = self.rx_buffer - window.buffered
        chunks: list[bytes] = []
        while True:
            replaying = bool(self._replay)
            sent = self._replay[0] if replaying else (self._staged or self._stage())
            if sent is None:
                break
            if not replaying and (self._syncs_in_flight or (sent.kind is Kind.SYNC and window)):
                break
            if window and (self.one_in_flight or len(sent.data) > room):
                # A line bigger than the whole buffer still goes, alone, or it would never go.
                break
            if replaying:
                # A fresh entry: the stale copy may still be in the window, waiting for its rejection.
                sent = replace(self._replay.popleft(), stale=False)
            else:
                self._commit_new(sent)
            self._enter(sent)
            # Not just minus this line: a line the planner credit covers takes no room.
            room = self.rx_buffer - window.buffered
            chunks.append(sent.data)
        return b"".join(chunks)

    def receive(self, line: str) -> Outcome:
        return self.answer(self.classify(line))

    def answer(self, reply: Reply) -> Outcome:
        """``receive`` for a line already classified."""
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
        flow = self._window.flow(data)
        if kind is Kind.SYNC:
            return Sent(frame(0, data, data_xor), 0, kind, flow=INSTANT)
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
            self._history.add(sent)

    def _enter(self, sent: Sent) -> None:
        self._window.enter(sent)
        self.bytes_sent += len(sent.data)
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
            self._leave(window.oldest(stale=True))
        elif reply.line is not None and self.checksums:
            self._ack_through(window.find(reply.line))
        elif reply.temperatures and (poll := window.find(reports=True)) is not None:
            self._ack_through(poll)
        else:
            self._leave(window.oldest(stale=False))
        if reply.buffer_free is not None:
            self.planner_free = reply.planner_free
            window.note_queue(reply.buffer_free, reply.planner_free)
        if self._feed is not None and self._feed_pos >= self._feed_end and not self._job_in_flight \
                and not self._replay and self._peek is None:
            # Every job line has been answered and none is waiting to be sent again: all were taken.
            self._feed = None
            self.lines_done = self.job_lines
            return Outcome(reply, job_done=True)
        return Outcome(reply)

    def _ack_through(self, i: int | None) -> None:
        """The ok answers entry ``i``; every entry before it was answered too, its ok lost on the way."""
        if i is None:
            # It names nothing we wait for (a late or repeated ok): say so, change nothing.
            self.unexpected_oks += 1
            return
        for _ in range(i):
            if not self._window[0].stale:
                self.lost_oks += 1
            self._leave(0)
        self._leave(0)

    def _leave(self, i: int) -> None:
        """Entry ``i`` got its answer: an ok if it was good, its rejection if it was stale."""
        sent = self._window.leave(i)
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
        if wanted == self._history.wanted and self._window.stale > self._pending_rejections:
            self.ignored_resends += 1
            self._rejected()
            return Outcome(reply)
        rewind = self._history.rewind(wanted, sync_unanswered=self._syncs_in_flight > 0)
        if isinstance(rewind, str):
            return Outcome(reply, failure=rewind)
        self._window.mark_stale(rewind.first)
        self._replay = rewind.lines
        self.resends += 1
        self._rejected()
        return Outcome(reply)

    def _rejected(self) -> None:
        """A rejection was announced: its ok follows (Marlin), or there is none and the line is let go now."""
        if self.resend_ok:
            self._pending_rejections += 1
        elif self._window:
            self._leave(self._window.oldest(stale=True))
