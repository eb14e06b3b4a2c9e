"""Commands from the hub: acted on once per ``command_id``, answered through the event outbox.

MQTT delivers a QoS 1 command at least once, and the hub re-sends a command
it got no answer to, so every command id is recorded before the broker gets
its PUBACK. A command seen before is never acted on again: its stored answer
is sent again instead, also after an agent restart. A command that was
received but never answered (the agent died mid-way) is answered ``failed``
when the agent starts again; whether it took effect is unknown, and saying so
beats a silent hub waiting forever.

A StartJob (or StartRender) downloads its file in a task of its own, so the
MQTT loop never waits on a download, and an emergency stop or cancel for that
device aborts the download instead of queueing behind it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import structlog

from protocol import codec
from protocol.messages import (
    COMMAND_TYPES,
    CancelJob,
    Command,
    CommandAck,
    DeviceState,
    EmergencyStop,
    PauseJob,
    ResumeJob,
    SendGcode,
    StartJob,
    Rebirth,
    StartRender,
)

from .devices.base import CommandRejected, Console, Device, Renderer
from .files import FileFetchError, JobFileCache
from .event_outbox import EventOutbox

log = structlog.get_logger("farmhand.agent.commands")

AckStatus = Literal["accepted", "rejected", "done", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    device TEXT NOT NULL,
    received_at TEXT NOT NULL,
    status TEXT,
    reason TEXT NOT NULL DEFAULT '',
    answered_at TEXT
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


class CommandStore:
    """Seen command ids and their answers.

    It lives in the event outbox's database so that an answer and the event carrying
    it commit in one transaction: never an answer stored but not sent.
    Answers older than ``keep_days`` are forgotten; no broker or hub re-sends
    a command that old.
    """

    def __init__(self, outbox: EventOutbox, topic: str, *, keep_days: float = 30) -> None:
        self._outbox = outbox
        self._topic = topic
        db = outbox.db
        db.executescript(_SCHEMA)
        cutoff = (datetime.now(UTC) - timedelta(days=keep_days)).isoformat()
        with outbox.transaction():
            db.execute("DELETE FROM commands WHERE answered_at < ?", (cutoff,))

    def lookup(self, command_id: str) -> tuple[bool, CommandAck | None]:
        """(seen before, its answer if it has one yet)."""
        row = self._outbox.db.execute(
            "SELECT status, reason FROM commands WHERE command_id = ?", (command_id,)
        ).fetchone()
        if row is None:
            return False, None
        status, reason = row
        return True, None if status is None else CommandAck(command_id=command_id, status=status, reason=reason)

    def begin(self, command: Command) -> None:
        with self._outbox.transaction() as db:
            db.execute(
                "INSERT INTO commands(command_id, type, device, received_at) VALUES (?, ?, ?, ?)",
                (command.command_id, command.type, command.device, _now()),
            )

    def answer(self, command_id: str, status: AckStatus, reason: str = "") -> CommandAck:
        ack = CommandAck(command_id=command_id, status=status, reason=reason)

        def record(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE commands SET status = ?, reason = ?, answered_at = ? WHERE command_id = ?",
                (status, reason, _now(), command_id),
            )

        self._outbox.append(self._topic, ack, before_commit=record)
        return ack

    def resend(self, ack: CommandAck) -> None:
        self._outbox.append(self._topic, ack)

    def unanswered(self) -> list[str]:
        rows = self._outbox.db.execute("SELECT command_id FROM commands WHERE status IS NULL ORDER BY received_at")
        return [r[0] for r in rows]


@dataclass
class _Starting:
    """A start command between its arrival and the device starting (or refusing) the job."""

    command: StartJob | StartRender
    launch: Callable[[Path], Awaitable[None]]
    task: asyncio.Task[None] | None = None
    downloading: bool = True
    abort_reason: str = ""


@dataclass
class CommandCounters:
    executed: int = 0
    repeated: int = 0
    malformed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


class CommandDispatcher:
    def __init__(self, devices: Mapping[str, Device], store: CommandStore, files: JobFileCache,
                 rebirth: Callable[[str], None] = lambda reason: None) -> None:
        """``rebirth(reason)``: publish the node's birth and every status again, when the hub asks."""
        self._devices = devices
        self._rebirth = rebirth
        self._store = store
        self._files = files
        self._starting: dict[str, _Starting] = {}
        self._console: set[asyncio.Task[None]] = set()
        self.counters = CommandCounters()

    def answer_interrupted(self) -> int:
        """Answer ``failed`` to commands a previous run received but never answered."""
        ids = self._store.unanswered()
        for command_id in ids:
            self._answer(command_id, "failed", "the agent restarted before it finished this command")
        return len(ids)

    async def handle(self, payload: bytes) -> None:
        """One payload from the command topic. Never raises for bad input."""
        try:
            body = codec.decode(payload).body
        except codec.ProtocolError as exc:
            self._malformed(str(exc))
            return
        if isinstance(body, Rebirth):
            log.info("rebirth_requested", reason=body.reason)
            self._rebirth(body.reason)
            return
        if not isinstance(body, COMMAND_TYPES):
            self._malformed(f"a {body.type} message is not a command")
            return
        cmd: Command = body  # type: ignore[assignment]
        # No await between the lookup and begin(): a redelivery racing this one
        # sees the command as already seen.
        seen, ack = self._store.lookup(cmd.command_id)
        if seen:
            self.counters.repeated += 1
            log.info("command_repeated", command_id=cmd.command_id, type=cmd.type,
                     answer=ack.status if ack else "pending")
            if ack is not None:
                self._store.resend(ack)
            return
        self._store.begin(cmd)
        self.counters.executed += 1
        log.info("command_received", command_id=cmd.command_id, type=cmd.type, device=cmd.device)
        device = self._devices.get(cmd.device)
        if device is None:
            have = ", ".join(sorted(self._devices)) or "none"
            self._answer(cmd.command_id, "rejected", f"unknown device {cmd.device!r} (this node has: {have})")
            return
        match cmd:
            case StartJob():
                self._begin_start(cmd, device, lambda path: device.start_job(cmd.job_id, path))
            case StartRender() if isinstance(device, Renderer):
                self._begin_start(cmd, device, lambda path: device.start_render(cmd, path))
            case StartRender():
                self._answer(cmd.command_id, "rejected", f"device {device.id} cannot render")
            case SendGcode() if isinstance(device, Console):
                # G28 can take a minute: never hold up the commands behind it (an emergency stop).
                lines = list(cmd.lines)
                task = asyncio.create_task(self._act(cmd.command_id, lambda: device.send_gcode(cmd.command_id, lines)),
                                           name=f"console:{cmd.command_id}")
                self._console.add(task)
                task.add_done_callback(self._console.discard)
            case SendGcode():
                self._answer(cmd.command_id, "rejected", f"device {device.id} has no G-code console")
            case PauseJob():
                await self._act(cmd.command_id, device.pause)
            case ResumeJob():
                await self._act(cmd.command_id, device.resume)
            case CancelJob():
                await self._cancel(cmd, device)
            case EmergencyStop():
                starting = self._starting.get(device.id)
                if starting is not None and starting.downloading:
                    self._abort(starting, f"emergency stop ({cmd.command_id}) before the job started")
                await self._act(cmd.command_id, device.emergency_stop)
            case _:
                self._answer(cmd.command_id, "rejected", f"this agent does not handle {cmd.type}")

    async def close(self) -> None:
        """Abort downloads (answering their StartJob) and let starting jobs finish starting."""
        for starting in list(self._starting.values()):
            if starting.downloading:
                self._abort(starting, "the agent stopped before the job started")
        tasks = [s.task for s in self._starting.values() if s.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        if self._console:
            # Console lines still running get their answer before the devices close.
            await asyncio.wait(self._console, timeout=5)

    # ---------------------------------------------------------------- start

    def _begin_start(self, cmd: StartJob | StartRender, device: Device,
                     launch: Callable[[Path], Awaitable[None]]) -> None:
        other = self._starting.get(device.id)
        if other is not None:
            self._answer(cmd.command_id, "rejected",
                         f"device {device.id} is already starting job {other.command.job_id}")
            return
        # The driver would refuse too; refusing now saves a useless download.
        state = device.status().state
        if state is not DeviceState.IDLE:
            self._answer(cmd.command_id, "rejected", f"device {device.id} is {state.value}, not idle")
            return
        starting = _Starting(cmd, launch)
        starting.task = asyncio.create_task(self._start(starting, device), name=f"start:{cmd.command_id}")
        self._starting[device.id] = starting

    async def _start(self, starting: _Starting, device: Device) -> None:
        cmd = starting.command
        try:
            try:
                path = await self._files.get(*_file_of(cmd))
            except FileFetchError as exc:
                self._answer(cmd.command_id, "rejected", str(exc))
                return
            except asyncio.CancelledError:
                self._answer(cmd.command_id, "rejected", starting.abort_reason or "cancelled before the job started")
                return
            starting.downloading = False
            await self._act(cmd.command_id, lambda: starting.launch(path), success="accepted")
        except Exception as exc:
            log.exception("start_job_failed", command_id=cmd.command_id, device=device.id)
            self._answer(cmd.command_id, "failed", f"{type(exc).__name__}: {exc}")
        finally:
            self._starting.pop(device.id, None)

    def _abort(self, starting: _Starting, reason: str) -> None:
        starting.abort_reason = reason
        if starting.task is not None:
            starting.task.cancel()

    # ---------------------------------------------------------------- the rest

    async def _cancel(self, cmd: CancelJob, device: Device) -> None:
        starting = self._starting.get(device.id)
        if starting is not None and cmd.job_id in (None, starting.command.job_id):
            if starting.downloading:
                self._abort(starting, f"cancelled ({cmd.command_id}) before the job started")
                self._answer(cmd.command_id, "done")
                return
            if starting.task is not None:
                await asyncio.wait([starting.task])  # starting is quick; then cancel the running job
        current = device.status().job_id
        if cmd.job_id is not None and current != cmd.job_id:
            # A late cancel must never stop the job that came after.
            self._answer(cmd.command_id, "rejected",
                         f"device {device.id} is not running job {cmd.job_id} (current: {current or 'none'})")
            return
        await self._act(cmd.command_id, device.cancel)

    async def _act(self, command_id: str, action: Callable[[], Awaitable[None]],
                   success: AckStatus = "done") -> None:
        try:
            await action()
        except CommandRejected as exc:
            self._answer(command_id, "rejected", str(exc))
        except Exception as exc:
            log.exception("command_failed", command_id=command_id)
            self._answer(command_id, "failed", f"{type(exc).__name__}: {exc}")
        else:
            self._answer(command_id, success)

    def _answer(self, command_id: str, status: AckStatus, reason: str = "") -> None:
        self._store.answer(command_id, status, reason)
        self.counters.by_status[status] = self.counters.by_status.get(status, 0) + 1
        log.info("command_answered", command_id=command_id, status=status, reason=reason or None)

    def _malformed(self, error: str) -> None:
        self.counters.malformed += 1
        log.warning("command_malformed", error=error, malformed_total=self.counters.malformed)


def _file_of(cmd: StartJob | StartRender) -> tuple[str, str, int]:
    """(url, sha256, size) of the file a start command needs."""
    if isinstance(cmd, StartRender):
        return cmd.blend_url, cmd.blend_sha256, cmd.blend_size
    return cmd.file_url, cmd.file_sha256, cmd.file_size
