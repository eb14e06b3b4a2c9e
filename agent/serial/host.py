"""The host side of the serial G-code protocol, without any I/O: lines in, bytes out.

``take()`` returns every framed line that fits the firmware's receive buffer;
``receive(line)`` digests one line the firmware printed. The driver only moves
bytes between these and the port, so the whole protocol can be tested with
plain strings.

Flow control is by counting: every line the firmware receives gets exactly one
``ok``, so the bytes of the lines sent and not yet answered are what sits in
its buffer, and we keep that at or under ``rx_buffer``.

Resends: a bad line makes the firmware print ``Resend: N`` for it *and* for
every line already in flight behind it (each of those is out of sequence). We
act on the first, replay from N, and ignore as many further requests for N as
there were numbered lines in flight behind the bad one. This does not depend
on which ``ok`` answers which line, so it holds both for firmware that answers
strictly in order and for Marlin, which rejects a line as soon as it parses it,
ahead of the ``ok`` of commands still queued.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from itertools import islice
from typing import NamedTuple

from .gcode import PreparedJob, checksum, frame
from .responses import FATAL_MARKERS, Kind as ReplyKind, Reply, classify


class Kind(IntEnum):
    JOB = 0
    COMMAND = 1
    POLL = 2
    SYNC = 3


@dataclass(slots=True, eq=False)
class Sent:
    data: bytes
    line: int | None
    kind: Kind
    index: int = -1
    """JOB: position in the job's feed."""


class Outcome(NamedTuple):
    reply: Reply
    job_done: bool = False
    failure: str | None = None


_SYNC_COMMAND = b"M110 N0"


class HostEngine:
    def __init__(
        self,
        rx_buffer: int,
        *,
        checksums: bool = True,
        history: int = 1024,
        max_tries: int = 10,
        fatal_markers: tuple[str, ...] = FATAL_MARKERS,
    ) -> None:
        self.rx_buffer = rx_buffer
        self.checksums = checksums
        self.history = history
        self.max_tries = max_tries
        self.fatal_markers = fatal_markers
        self._log: deque[Sent] = deque(maxlen=history)
        self._window: deque[Sent] = deque()
        self._replay: deque[Sent] = deque()
        self._oob: deque[tuple[bytes, Kind]] = deque()
        self._staged: Sent | None = None
        self._feed: PreparedJob | None = None
        self._feed_end = 0
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.window_bytes = 0
        self._next_line = 0
        self._numbered = False
        self._feed_pos = 0
        self._held = False
        self._ignore_line: int | None = None
        self._ignore_count = 0
        self._streak = 0
        self._polls = 0
        self._job_in_flight = 0
        self._syncs_in_flight = 0
        self.lines_done = 0
        self.job_lines = 0
        self.resends = 0
        self.ignored_resends = 0
        self.unexpected_oks = 0

    # ------------------------------------------------------------------ policy's controls

    def reset(self) -> None:
        """Forget everything in flight: the port closed, the firmware restarted or halted."""
        self._log.clear()
        self._window.clear()
        self._replay.clear()
        self._oob.clear()
        self._staged = None
        self._feed = None
        self._reset_counters()

    def sync(self) -> None:
        """Queue ``N0 M110 N0``: from it on every line is numbered, starting again at 1.

        The sync goes alone: only once everything before it is answered, and nothing
        new follows until it is answered. Any resend request meanwhile is then about
        the sync itself, whatever numbering the firmware had before.
        """
        if self.checksums:
            self._queue(_SYNC_COMMAND, Kind.SYNC)

    def command(self, text: str, kind: Kind = Kind.COMMAND) -> None:
        """Queue a command ahead of the job's next line (scripts, polls)."""
        if kind is Kind.POLL:
            self._polls += 1
        self._queue(text.encode(), kind)

    def poll(self, text: str) -> bool:
        """Queue a temperature poll unless one is already waiting; True if queued."""
        if self._polls:
            return False
        self.command(text, Kind.POLL)
        return True

    def start_job(self, job: PreparedJob, tail: list[str] | tuple[str, ...] = ()) -> None:
        """Stream ``job`` after a sync; ``tail`` lines follow it and belong to it, but not to its count."""
        if self._feed is not None:
            raise RuntimeError("a job is already streaming")
        feed = PreparedJob(list(job.commands), list(job.xors))
        for text in tail:
            feed.append(text)
        self.job_lines = job.count
        self.sync()
        self._feed = feed
        self._feed_end = feed.count
        self._feed_pos = 0
        self.lines_done = 0
        self.resends = 0
        self._streak = 0
        self._held = False
        self._staged = None

    def hold(self, held: bool) -> None:
        """Stop (or go on) taking new job lines; lines already sent are still answered and replayed."""
        self._held = held
        if self._staged is not None and self._staged.kind is Kind.JOB:
            self._staged = None

    def drop_job(self) -> None:
        """Send no more of the job (cancel). Lines already sent may still need replaying."""
        self._feed = None
        self._held = False
        if self._staged is not None and self._staged.kind is Kind.JOB:
            self._staged = None

    @property
    def job_active(self) -> bool:
        return self._feed is not None

    @property
    def busy(self) -> bool:
        """Anything sent and unanswered, or waiting to be sent."""
        return bool(self._window or self._replay or self._oob or self._staged or self._feed is not None)

    @property
    def poll_pending(self) -> bool:
        return self._polls > 0

    @property
    def lines_sent(self) -> int:
        return min(self._feed_pos, self.job_lines)

    @property
    def in_flight(self) -> int:
        return len(self._window)

    # ------------------------------------------------------------------ the wire

    def take(self) -> bytes:
        """Every line that fits in the firmware's buffer now, framed, in order (b"" when none)."""
        room = self.rx_buffer - self.window_bytes
        chunks: list[bytes] = []
        while True:
            sent = self._replay[0] if self._replay else (self._staged or self._stage())
            if sent is None:
                break
            replaying = bool(self._replay)
            if not replaying and (self._syncs_in_flight or (sent.kind is Kind.SYNC and self._window)):
                break
            size = len(sent.data)
            # A line bigger than the whole buffer still goes, alone, or it would never go.
            if size > room and (self._window or chunks):
                break
            if replaying:
                self._replay.popleft()
            else:
                self._commit_new(sent)
            self._window.append(sent)
            self.window_bytes += size
            if sent.kind is Kind.JOB:
                self._job_in_flight += 1
            elif sent.kind is Kind.POLL:
                self._polls += 1
            elif sent.kind is Kind.SYNC:
                self._syncs_in_flight += 1
            room -= size
            chunks.append(sent.data)
        return b"".join(chunks)

    def receive(self, line: str) -> Outcome:
        reply = classify(line, self.fatal_markers)
        if reply.kind is ReplyKind.OK:
            return self._on_ok(reply)
        if reply.kind is ReplyKind.RESEND:
            return self._on_resend(reply)
        return Outcome(reply)

    # ------------------------------------------------------------------ internals

    def _queue(self, data: bytes, kind: Kind) -> None:
        self._oob.append((data, kind))
        if self._staged is not None and self._staged.kind is Kind.JOB:
            self._staged = None

    def _stage(self) -> Sent | None:
        if self._oob:
            data, kind = self._oob[0]
            self._staged = self._frame(data, checksum(data), kind, -1)
        elif self._feed is not None and not self._held and self._feed_pos < self._feed_end:
            pos = self._feed_pos
            self._staged = self._frame(self._feed.commands[pos], self._feed.xors[pos], Kind.JOB, pos)
        return self._staged

    def _frame(self, data: bytes, xor: int, kind: Kind, index: int) -> Sent:
        if kind is Kind.SYNC:
            return Sent(frame(0, data, xor), 0, kind)
        if self._numbered:
            return Sent(frame(self._next_line, data, xor), self._next_line, kind, index)
        return Sent(data + b"\n", None, kind, index)

    def _commit_new(self, sent: Sent) -> None:
        self._staged = None
        if sent.kind is Kind.JOB:
            self._feed_pos += 1
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

    def _on_ok(self, reply: Reply) -> Outcome:
        if not self._window:
            self.unexpected_oks += 1
            return Outcome(reply)
        sent = self._window.popleft()
        self.window_bytes -= len(sent.data)
        if sent.kind is Kind.JOB:
            self._job_in_flight -= 1
            if sent.index >= self.lines_done:
                self.lines_done = min(sent.index + 1, self.job_lines)
        elif sent.kind is Kind.POLL:
            self._polls -= 1
        elif sent.kind is Kind.SYNC:
            self._syncs_in_flight -= 1
        if self._feed is not None and self._feed_pos >= self._feed_end and not self._job_in_flight \
                and not self._replay:
            # Every job line has been answered and none is waiting to be sent again: all were taken.
            self._feed = None
            self.lines_done = self.job_lines
            return Outcome(reply, job_done=True)
        return Outcome(reply)

    def _on_resend(self, reply: Reply) -> Outcome:
        wanted = reply.line
        assert wanted is not None
        if not self._numbered:
            return Outcome(reply, failure=f"the firmware asked to resend line {wanted} but no line was numbered")
        if self._ignore_count and wanted == self._ignore_line:
            self._ignore_count -= 1
            self.ignored_resends += 1
            return Outcome(reply)
        start = self._rewind_point(wanted)
        if start is None:
            oldest = self._log[0].line if self._log else None
            return Outcome(reply, failure=f"the firmware asked to resend line {wanted}, which is no longer "
                                          f"in the host's history (oldest kept: {oldest})")
        target = self._log[start]
        # The same line asked for again and again: a line the firmware cannot take (cut short, or a bad cable).
        self._streak = self._streak + 1 if wanted == self._ignore_line else 1
        if self._streak > self.max_tries:
            return Outcome(reply, failure=f"the firmware rejected line {wanted} {self.max_tries} times in a row: "
                                          f"{target.data.decode('utf-8', 'replace').strip()!r}")
        stale = 0
        for sent in self._window:
            if sent is target:
                stale = 0
            elif sent.line is not None:
                stale += 1
        self._ignore_line = wanted
        self._ignore_count = stale
        self._replay = deque(islice(self._log, start, None))
        self.resends += 1
        return Outcome(reply)

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
