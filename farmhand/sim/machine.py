"""What the virtual printer's commands do: moves through a planner, heaters that take time, reports, the SD card.

The board (``firmware``) decides which line runs when; the ``Machine`` runs it.
A command either finishes at once, giving what it prints and its ok line, or
has to wait (a full planner, a dwell, homing, a heating wait): then it gives a
``Wait``, which the board awaits while it reads nothing more, as Marlin does.
Moves and heating are sped up by ``speed_factor``; keep-alives and autoreports
keep real time, since they pace a host, not the physics.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from agent.serial.profiles import Emulation

from .marlin import HeaterModel, Motion, parse_params
from .sdcard import SdCard

Result = tuple[list[str], str | None]
"""What a command printed, and its ok line (None: the usual ok)."""
Wait = Callable[[], Coroutine[Any, Any, Result]]
"""A command that has to wait: called, it waits and then gives the command's Result."""

# Commands a stock Marlin accepts that change nothing the simulation models.
_QUIET = frozenset(
    "G21 G29 G80 M17 M18 M84 M73 M75 M76 M77 M106 M107 M117 M118 M201 M203 M204 M205 M220 M221 M300 M900 "
    "M500 M501 M502 M503 M851 M420 M876 M21 M22 M108 M410".split()
)


class Machine:
    def __init__(self, *, emulation: Emulation, send: Callable[[list[str]], None], card: SdCard,
                 speed_factor: float, planner_slots: int, name: str, capabilities: dict[str, int]) -> None:
        self.emulation = emulation
        self._send = send
        self.card = card
        self.speed_factor = speed_factor
        self.planner_slots = planner_slots
        self.name = name
        self.capabilities = capabilities
        self.motion = Motion()
        self.hotend = HeaterModel(tau_s=25.0, now=self.now())
        self.bed = HeaterModel(tau_s=60.0, now=self.now())
        self.stopped = False
        self._planner: deque[float] = deque()
        self._break_wait = False
        self._autoreport: asyncio.Task[None] | None = None
        self._keepalive: asyncio.TimerHandle | None = None

    def now(self) -> float:
        """Simulated seconds: real time sped up."""
        return time.monotonic() * self.speed_factor

    def temperatures(self) -> dict[str, tuple[float, float]]:
        now = self.now()
        return {"T0": (self.hotend.at(now), self.hotend.target), "B": (self.bed.at(now), self.bed.target)}

    def break_wait(self) -> None:
        """M108: a heating wait ends at once."""
        self._break_wait = True

    def quick_stop(self) -> None:
        """M410: the moves planned are dropped."""
        self._planner.clear()

    def stop(self) -> None:
        """Power off: nothing more runs or reports."""
        self.stopped = True
        if self._autoreport is not None:
            self._autoreport.cancel()
            self._autoreport = None
        self._end_keepalive()

    def planner_free(self) -> int:
        now = time.monotonic()
        while self._planner and self._planner[0] <= now:
            self._planner.popleft()
        return max(0, self.planner_slots - len(self._planner))

    def execute(self, command: str) -> Result | Wait:
        """Run one command: its printed lines and ok line (None: the usual ok), or the wait that yields them."""
        code, params = parse_params(command)
        now = self.now()
        match code:
            case "G0" | "G1" | "G2" | "G3":
                duration = self.motion.move(params) / self.speed_factor
                if not self._plan(duration):
                    return partial(self._plan_when_free, duration)
            case "G28":
                self.motion.set_position({"X": 0.0, "Y": 0.0, "Z": 0.0})
                return partial(self._waited, self._drain_planner, 3.0)
            case "G4":
                return partial(self._waited, self._drain_planner, params.get("P", 0.0) / 1000.0 + params.get("S", 0.0))
            case "M400":
                if self._planner_busy():
                    return partial(self._waited, self._drain_planner)
            case "G90" | "G91":
                self.motion.relative = code == "G91"
            case "M82" | "M83":
                self.motion.relative_e = code == "M83"
            case "G92":
                self.motion.set_position(params)
            case "M104" | "M109":
                self.hotend.set_target(params.get("S", params.get("R", 0.0)), now)
                if code == "M109":
                    return partial(self._waited, partial(self._wait_heater, self.hotend, cooling="R" in params))
            case "M140" | "M190":
                self.bed.set_target(params.get("S", params.get("R", 0.0)), now)
                if code == "M190":
                    return partial(self._waited, partial(self._wait_heater, self.bed, cooling="R" in params))
            case "M105":
                report = self._temperature_report()
                if self.emulation.ok_temperatures:
                    return [], f"ok {report}"
                return [report], "ok"
            case "M114":
                motion, template = self.motion, self.emulation.position_report
                report = template.format(X=motion.x, Y=motion.y, Z=motion.z, E=motion.e) if template else motion.report()
                return [report], None
            case "M115":
                report = self._firmware_report()
                if self.emulation.firmware_on_ok:
                    return [], f"ok {report[0]}"
                return report, None
            case "M155":
                self._set_autoreport(params.get("S", 0.0))
            case "M20":
                return self.card.listing(), None
            case "M23":
                return self.card.select(command.split(None, 1)[1] if " " in command else ""), None
            case "M24":
                self.card.start()
            case "M25":
                self.card.pause()
            case "M524":
                self.card.abort()
            case "M27":
                return [self.card.status()], None
            case _ if code in _QUIET:
                pass
            case _:
                return [self.emulation.unknown_command.format(command=command, code=code)], None
        return [], None

    async def _waited(self, first: Callable[[], Coroutine[Any, Any, None]], then_s: float = 0.0) -> Result:
        await first()
        await self._sleep(then_s)
        return [], None

    async def _plan_when_free(self, duration_s: float) -> Result:
        """A move into a full planner: Marlin waits in the handler until the oldest move is done."""
        planner = self._planner
        await self._wait(planner[0] - time.monotonic())
        if planner:
            planner.popleft()
        self._plan(duration_s)
        return [], None

    def _firmware_report(self) -> list[str]:
        emulation = self.emulation
        if emulation.firmware_on_ok:
            return [f"FIRMWARE_NAME:{emulation.firmware_name}"]
        head = (f"FIRMWARE_NAME:{emulation.firmware_name} SOURCE_CODE_URL:{emulation.firmware_url} "
                f"PROTOCOL_VERSION:1.0 MACHINE_TYPE:{self.name} EXTRUDER_COUNT:1 "
                f"UUID:00000000-0000-4000-8000-000000000000")
        return [head, *(f"Cap:{name}:{on}" for name, on in self.capabilities.items())]

    def _temperature_report(self) -> str:
        now = self.now()
        hotend, bed = self.hotend, self.bed
        return self.emulation.temperature_report.format(
            T0=hotend.at(now), T0_target=hotend.target, T0_power=127 if hotend.target > hotend.actual else 0,
            B=bed.at(now), B_target=bed.target, B_power=127 if bed.target > bed.actual else 0)

    async def _wait_heater(self, heater: HeaterModel, cooling: bool) -> None:
        """Block like M109/M190, printing the temperatures every simulated second."""
        report_every = max(1.0 / self.speed_factor, 0.05)
        self._break_wait = False
        while not self._break_wait and not self.stopped:
            remaining = heater.time_to_reach(self.now(), cooling=cooling) / self.speed_factor
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, report_every))
            self._send([f"{self._temperature_report()}{self.emulation.heating_report_suffix}"])

    def _set_autoreport(self, interval_s: float) -> None:
        if self._autoreport is not None:
            self._autoreport.cancel()
            self._autoreport = None
        if interval_s > 0:
            # M155 counts real seconds: it paces a display, not the simulated physics.
            self._autoreport = asyncio.create_task(self._autoreport_loop(max(interval_s, 0.05)))

    async def _autoreport_loop(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self._send([self._temperature_report()])

    def _plan(self, duration_s: float) -> bool:
        """Queue a move of ``duration_s`` real seconds if the planner has room; False when it is full."""
        now = time.monotonic()
        planner = self._planner
        while planner and planner[0] <= now:
            planner.popleft()
        if len(planner) >= self.planner_slots:
            return False
        start = planner[-1] if planner and planner[-1] > now else now
        planner.append(start + duration_s)
        return True

    def _planner_busy(self) -> bool:
        return bool(self._planner) and self._planner[-1] > time.monotonic()

    async def _drain_planner(self) -> None:
        if self._planner:
            await self._wait(max(0.0, self._planner[-1] - time.monotonic()))
            self._planner.clear()

    async def _sleep(self, simulated_s: float) -> None:
        if simulated_s > 0:
            await self._wait(simulated_s / self.speed_factor)

    async def _wait(self, seconds: float) -> None:
        """Wait inside a command: the host hears ``busy`` every keep-alive period meanwhile."""
        if seconds <= 0:
            return
        period = max(self.emulation.busy_interval_s / self.speed_factor, 0.02)
        if seconds > period and self.emulation.busy:
            self._keepalive = asyncio.get_running_loop().call_later(period, self._busy, period)
        try:
            await asyncio.sleep(seconds)
        finally:
            self._end_keepalive()

    def _busy(self, period: float) -> None:
        self._send([self.emulation.busy])
        self._keepalive = asyncio.get_running_loop().call_later(period, self._busy, period)

    def _end_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
