"""Blender on the command line: run it, turn its output into events, report how it ended.

One ``BlenderRun`` is one Blender process rendering a frame range of one
.blend file. It runs in its own process group, so that a cancel reaches
whatever Blender started, and it reports what it saw: the frames it saved,
Blender's last output lines and its own error words when it failed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType

import structlog

from agent.render.command import PYTHON_FAILED_EXIT, RenderSpec, build_command
from agent.render.progress import LineKind, ProgressUpdate, parse_line

log = structlog.get_logger("farmhand.render")

__all__ = ["BlenderRun", "BlenderUnavailable", "FrameProgress", "FrameSaved", "FrameStarted", "Outcome",
           "RenderEvent", "RenderSpec", "RunResult", "build_command"]


class BlenderUnavailable(RuntimeError):
    """Blender is missing or does not start; the text says which."""


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class FrameStarted:
    frame: int


@dataclass(frozen=True, slots=True)
class FrameProgress:
    frame: int
    samples_done: int
    samples_total: int
    remaining_s: float | None
    mem_mb: float | None


@dataclass(frozen=True, slots=True)
class FrameSaved:
    frame: int
    path: Path
    render_s: float  # from the frame's first status line to its file written, by our clock


RenderEvent = FrameStarted | FrameProgress | FrameSaved


class Outcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True, slots=True)
class RunResult:
    outcome: Outcome
    returncode: int | None
    frames: list[FrameSaved]
    tail: list[str]  # Blender's last output lines, the crash report
    duration_s: float
    startup_s: float | None  # process start to the first status line: Blender start-up and .blend load
    error: str | None = None  # one line saying why, in Blender's words where it gave any

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.COMPLETED


# --------------------------------------------------------------------------- the run


class BlenderRun:
    """One Blender process: ``await start()``, iterate events, ``await wait()``.

    Events are delivered both to ``on_event`` (each one, synchronously, from
    the output reader) and to ``async for event in run``. For the iterator,
    progress is a snapshot: an unread ``FrameProgress`` is replaced by the next
    one, so a slow reader costs memory per frame, never per sample.
    """

    def __init__(
        self,
        spec: RenderSpec,
        *,
        blender: str = "blender",
        timeout_s: float | None = None,
        on_event: Callable[[RenderEvent], None] | None = None,
        tail_lines: int = 40,
        stop_grace_s: float = 5.0,
    ) -> None:
        self.spec = spec
        self.command = spec.command(blender)  # bad input fails here, before anything runs
        self.timeout_s = timeout_s
        self.stop_grace_s = stop_grace_s
        self._on_event = on_event
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._stopper: asyncio.Task[None] | None = None
        self._stop_reason: Outcome | None = None
        self._interrupted = False
        self._pending: deque[RenderEvent] = deque()
        self._wakeup = asyncio.Event()
        self._result: RunResult | None = None
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self._errors: list[str] = []
        self._saved: list[FrameSaved] = []
        self._saved_lines = 0
        self._last_saved_frame: int | None = None
        self._frame: int | None = None
        self._frame_t0 = 0.0
        self._t0 = 0.0
        self._startup_s: float | None = None
        self._in_traceback = False
        self.unreadable_lines = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("this run has already been started")
        self._t0 = time.monotonic()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                limit=1 << 20,
            )
        except OSError as exc:
            raise BlenderUnavailable(f"cannot start {self.command[0]!r}: {exc.strerror or exc}") from None
        log.info("render_started", pid=self._proc.pid, blend=str(self.spec.blend),
                 frames=f"{self.spec.frame_start}-{self.spec.frame_end}", engine=self.spec.engine,
                 device=self.spec.device)
        self._reader = asyncio.create_task(self._read(), name=f"blender-{self._proc.pid}")
        if self.timeout_s is not None:
            self._watchdog = asyncio.create_task(self._expire(self.timeout_s))

    async def __aenter__(self) -> BlenderRun:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        # Leaving the block early must not leave Blender rendering on its own.
        if self._result is None:
            await self.cancel(self.stop_grace_s)

    def __aiter__(self) -> AsyncIterator[RenderEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[RenderEvent]:
        while True:
            while self._pending:
                yield self._pending.popleft()
            if self._result is not None:
                return
            self._wakeup.clear()
            await self._wakeup.wait()

    async def wait(self) -> RunResult:
        if self._reader is None:
            raise RuntimeError("this run has not been started")
        await asyncio.shield(self._reader)
        if self._stopper is not None:
            await asyncio.shield(self._stopper)
        assert self._result is not None
        return self._result

    async def cancel(self, grace_s: float = 5.0) -> RunResult:
        """SIGINT to Blender's process group, SIGKILL after ``grace_s``; returns once it is gone."""
        self._begin_stop(Outcome.CANCELLED, grace_s)
        return await self.wait()

    # ----------------------------------------------------------------- stopping

    def _begin_stop(self, reason: Outcome, grace_s: float) -> None:
        if self._proc is None:
            raise RuntimeError("this run has not been started")
        # A process that has already exited finished on its own: report that, not a cancel.
        if self._stopper is None and self._result is None and self._proc.returncode is None:
            self._stop_reason = reason
            self._stopper = asyncio.create_task(self._stop(grace_s))

    async def _expire(self, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)
        log.warning("render_timeout", pid=self.pid, timeout_s=timeout_s)
        self._begin_stop(Outcome.TIMED_OUT, self.stop_grace_s)

    async def _stop(self, grace_s: float) -> None:
        assert self._proc is not None
        pgid = self._proc.pid  # start_new_session made Blender its group's leader
        # From here on a frame Blender writes is one it was told to abandon: partial.
        self._interrupted = True
        # Blender's first SIGINT breaks the render and lets it exit cleanly.
        self._signal_group(pgid, signal.SIGINT)
        try:
            await asyncio.wait_for(asyncio.shield(self._proc.wait()), grace_s)
        except TimeoutError:
            log.warning("render_kill", pid=pgid, grace_s=grace_s)
            self._signal_group(pgid, signal.SIGKILL)
            await self._proc.wait()
        # Children that ignored SIGINT outlive Blender; the job's processes all go with it.
        self._signal_group(pgid, signal.SIGKILL)

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass

    # ----------------------------------------------------------------- reading

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        while True:
            try:
                raw = await stdout.readline()
            except ValueError:
                # A line longer than the reader's limit; asyncio has dropped it.
                self.unreadable_lines += 1
                continue
            if not raw:
                break
            line = raw.decode(errors="replace").rstrip("\r\n")
            self._tail.append(line)
            if self._in_traceback and line[:1].strip():
                # The first unindented line after a traceback is the exception itself.
                self._errors.append(f"Python: {line.strip()}")
                self._in_traceback = False
            try:
                update = parse_line(line)
                if update is not None:
                    self._handle(update)
            except Exception:
                self.unreadable_lines += 1
                log.exception("render_line_failed", pid=self.pid, line=line[:200])
        returncode = await self._proc.wait()
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._result = self._conclude(returncode)
        self._wakeup.set()
        log.info("render_finished", pid=self.pid, outcome=self._result.outcome, returncode=returncode,
                 frames=len(self._result.frames), duration_s=round(self._result.duration_s, 3),
                 error=self._result.error)

    def _handle(self, update: ProgressUpdate) -> None:
        now = time.monotonic()
        if update.kind is LineKind.STATUS:
            frame = self._frame_of(update)
            if frame != self._frame:
                if frame == self._last_saved_frame:
                    return  # a late status line of the frame just saved
                if self._startup_s is None:
                    self._startup_s = now - self._t0
                self._frame, self._frame_t0 = frame, now
                self._emit(FrameStarted(frame))
            if update.samples_done is not None and update.samples_total is not None:
                self._emit(FrameProgress(frame, update.samples_done, update.samples_total,
                                         update.remaining_s, update.mem_mb))
        elif update.kind is LineKind.SAVED and update.path is not None:
            frame = self._frame if self._frame is not None else self.spec.frame_start + self._saved_lines
            self._saved_lines += 1
            started = self._frame_t0 if self._frame is not None else self._t0
            self._frame, self._last_saved_frame = None, frame
            if self._interrupted:
                log.info("render_partial_frame_dropped", pid=self.pid, frame=frame, path=update.path)
                return
            saved = FrameSaved(frame, Path(update.path), now - started)
            self._saved.append(saved)
            log.info("render_frame_saved", pid=self.pid, frame=frame, path=update.path,
                     render_s=round(saved.render_s, 3))
            self._emit(saved)
        elif update.kind is LineKind.ERROR and update.message is not None:
            if update.message.endswith("Traceback (most recent call last):"):
                self._in_traceback = True
            else:
                self._errors.append(update.message)

    def _frame_of(self, update: ProgressUpdate) -> int:
        if update.frame is not None:
            return update.frame
        if self._frame is not None:
            return self._frame
        # Output without "Fra:" (newer Blender logs): frames come in order from the start.
        return self.spec.frame_start + self._saved_lines

    def _emit(self, event: RenderEvent) -> None:
        if isinstance(event, FrameProgress) and self._pending and isinstance(self._pending[-1], FrameProgress):
            self._pending[-1] = event
        else:
            self._pending.append(event)
        self._wakeup.set()
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("render_event_handler_failed", pid=self.pid, event=repr(event))

    def _last_words(self) -> str:
        """Blender's last meaningful line: for a Python error, the exception itself."""
        return next((line.strip() for line in reversed(self._tail) if line.strip() not in ("", "Blender quit")), "")

    def _conclude(self, returncode: int) -> RunResult:
        outcome, error = Outcome.COMPLETED, None
        first_error = self._errors[0] if self._errors else None
        if self._stop_reason is Outcome.TIMED_OUT:
            outcome, error = Outcome.TIMED_OUT, f"timed out after {self.timeout_s:g} s"
        elif self._stop_reason is Outcome.CANCELLED:
            outcome, error = Outcome.CANCELLED, "cancelled"
        elif returncode < 0:
            name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
            outcome, error = Outcome.FAILED, f"Blender was killed by {name}"
        elif returncode == PYTHON_FAILED_EXIT:
            outcome = Outcome.FAILED
            error = f"the render settings could not be applied: {first_error or self._last_words()}"
        elif returncode != 0:
            outcome = Outcome.FAILED
            error = first_error or f"Blender exited with {returncode}: {self._last_words()}"
        else:
            missing = sorted(set(self.spec.frames) - {s.frame for s in self._saved})
            if missing:
                outcome = Outcome.FAILED
                error = f"Blender exited without saving frame(s) {_spans(missing)}: {first_error or self._last_words()}"
        return RunResult(
            outcome=outcome,
            returncode=returncode,
            frames=list(self._saved),
            tail=list(self._tail),
            duration_s=time.monotonic() - self._t0,
            startup_s=self._startup_s,
            error=error,
        )


def _spans(frames: list[int]) -> str:
    """``[1, 2, 3, 7]`` as ``1-3, 7``."""
    spans: list[list[int]] = []
    for frame in frames:
        if spans and frame == spans[-1][1] + 1:
            spans[-1][1] = frame
        else:
            spans.append([frame, frame])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
