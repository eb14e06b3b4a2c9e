"""The operator's G-code console: send lines to a device, see the firmware's replies.

A ``SendGcode`` is recorded in the outbox before the 202, like every command.
Unlike a job command it is worth carrying out only while someone watches the
console: one left unanswered for ``ttl_s`` is superseded, so a ``G28`` typed
at a printer whose node was offline does not run when the node comes back.

The console history (sent lines, replies, refusals) is kept in memory, the
last ``MAX_LINES`` per device. It is a view, not a record: the commands table
keeps what was sent and the events table every ``ConsoleOutput``, so nothing
is lost when a restart empties it, and the ingest hot path writes nothing more.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import uuid
from collections import OrderedDict, deque
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from protocol.messages import CommandAck, ConsoleOutput, DeviceError, GcodeLine, SendGcode

from hub.api.bodies import body, respond
from hub.api.problems import ApiProblem
from hub.api.routes import Op
from hub.bus import Bus
from hub.mqtt import CommandOutbox, Ingest, Received
from hub.store import Store

log = structlog.get_logger("farmhand.hub.console")

MAX_LINES = 200
TTL_S = 60.0
# Console commands awaiting their ack, to show a refusal in the right device's console.
MAX_WAITING = 1000


class GcodeSend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: list[GcodeLine] = Field(min_length=1, max_length=50,
                                   description="printable ASCII without '*', at most 96 characters each")


class GcodeAccepted(BaseModel):
    command_id: str
    device: str
    lines: int


Direction = Literal["sent", "received", "status"]


class ConsoleEntry(BaseModel):
    n: int = Field(description="increases with every line this hub adds to any console (a client appends n > last)")
    at: datetime
    direction: Direction = Field(
        description="sent: a line the hub sent; received: the firmware's reply; status: the agent refused or failed")
    text: str
    command_id: str


class ConsoleLog(BaseModel):
    device: str
    lines: list[ConsoleEntry] = Field(description=f"oldest first, at most {MAX_LINES}")


class DeviceConsole:
    def __init__(self, store: Store, outbox: CommandOutbox, bus: Bus, ingest: Ingest, *,
                 max_lines: int = MAX_LINES, ttl_s: float = TTL_S) -> None:
        self.store = store
        self.outbox = outbox
        self.bus = bus
        self.max_lines = max_lines
        self.ttl_s = ttl_s
        self._logs: dict[str, deque[ConsoleEntry]] = {}
        self._waiting: OrderedDict[str, str] = OrderedDict()  # command_id -> "node/device"
        self._numbers = itertools.count(1)
        ingest.observe(ConsoleOutput, self.output)
        ingest.observe(CommandAck, self.ack)
        ingest.observe(DeviceError, self.refused)

    def ops(self) -> list[Op]:
        tags = ("devices",)
        return [
            Op("POST", "/api/v1/devices/{node}/{device}/gcode", self.send, body=GcodeSend, response=GcodeAccepted,
               status=202, tags=tags, summary="Send G-code lines to a device's console (replies: GET .../console)"),
            Op("GET", "/api/v1/devices/{node}/{device}/console", self.get, response=ConsoleLog, tags=tags,
               summary=f"The device's console: the last {MAX_LINES} lines sent and received"),
        ]

    # ------------------------------------------------------------------ HTTP

    def _device(self, request: web.Request) -> tuple[str, str, dict[str, Any]]:
        node, device = request.match_info["node"], request.match_info["device"]
        row = self.store.one("SELECT d.listed, COALESCE(n.online, 0) AS online FROM devices d"
                             " LEFT JOIN nodes n ON n.id = d.node WHERE d.node = ? AND d.id = ?", (node, device))
        if row is None:
            raise ApiProblem(404, "Device not found", f"no device {node}/{device}")
        return node, device, row

    async def send(self, request: web.Request) -> web.Response:
        node, device, row = self._device(request)
        spec = await body(request, GcodeSend, "Invalid G-code")
        if not (row["online"] and row["listed"]):
            # Queued for later, it would run long after the operator stopped watching.
            raise ApiProblem(409, "Device offline", f"{node}/{device} is offline: console lines are not queued")
        command = SendGcode(command_id=f"gcode-{uuid.uuid4().hex}", device=device, lines=spec.lines)
        with self.store.transaction() as db:
            out = self.outbox.record(db, node, command, None)
        key = f"{node}/{device}"
        self._wait(command.command_id, key)
        self._add(key, [self._entry("sent", line, command.command_id) for line in spec.lines])
        self.outbox.send(out)
        asyncio.get_running_loop().call_later(self.ttl_s, self._expire, command.command_id)
        log.info("gcode_sent", device=key, command_id=command.command_id, lines=len(spec.lines))
        return respond(GcodeAccepted(command_id=command.command_id, device=key, lines=len(spec.lines)), 202)

    async def get(self, request: web.Request) -> web.Response:
        node, device, _ = self._device(request)
        key = f"{node}/{device}"
        return respond(ConsoleLog(device=key, lines=list(self._logs.get(key, ()))))

    # ------------------------------------------------------------------ events

    def output(self, msg: Received[ConsoleOutput]) -> None:
        """Ingest observer: the firmware's replies go into the device's console."""
        body = msg.body
        self._add(f"{msg.node}/{body.device}", [self._entry("received", line, body.command_id) for line in body.lines])

    def ack(self, msg: Received[CommandAck]) -> None:
        """Ingest observer: a console command the agent refused or failed shows in its console."""
        body = msg.body
        if body.command_id not in self._waiting or body.status == "accepted":
            return
        key = self._waiting.pop(body.command_id)
        if body.status in ("rejected", "failed"):
            self._add(key, [self._entry("status", f"{body.status}: {body.reason}".rstrip(": "), body.command_id)])

    def refused(self, msg: Received[DeviceError]) -> None:
        """Ingest observer: a line of a job the firmware refused (Klipper's ``// Unknown command``), in its words."""
        body = msg.body
        if body.command is not None:
            job = f" (job {body.job_id})" if body.job_id else ""
            self._add(f"{msg.node}/{body.device}",
                      [self._entry("status", f"refused{job}: {body.command}: {body.message}", body.job_id or "")])

    def _entry(self, direction: Direction, text: str, command_id: str) -> ConsoleEntry:
        return ConsoleEntry(n=next(self._numbers), at=datetime.now(UTC), direction=direction, text=text,
                            command_id=command_id)

    def _add(self, key: str, entries: list[ConsoleEntry]) -> None:
        if not entries:
            return
        self._logs.setdefault(key, deque(maxlen=self.max_lines)).extend(entries)
        if self.bus.wants("console", key):
            self.bus.publish("console", key, [e.model_dump(mode="json") for e in entries])

    def _wait(self, command_id: str, key: str) -> None:
        self._waiting[command_id] = key
        while len(self._waiting) > MAX_WAITING:
            self._waiting.popitem(last=False)

    def _expire(self, command_id: str) -> None:
        key = self._waiting.get(command_id)
        if key is None:
            return
        try:
            row = self.outbox.get(command_id)
            if row is None or row["ack_status"] is not None:
                return
            with self.store.transaction() as db:
                self.outbox.supersede(db, command_id)
        except sqlite3.ProgrammingError:
            return  # the hub stopped (its database is closed) before the timer fired
        self._waiting.pop(command_id, None)
        self._add(key, [self._entry("status", f"no answer in {self.ttl_s:g} s: not sent again", command_id)])
        log.info("gcode_expired", device=key, command_id=command_id)
