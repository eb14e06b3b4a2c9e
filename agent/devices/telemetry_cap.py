"""Telemetry at most once per interval, with the latest reading held back rather than dropped.

A printer that reports in a burst, or a little early, would otherwise leave the hub showing an older reading
for a whole interval after the printer said something new. A held-back reading goes out as soon as the
interval allows, unless it says nothing new: a printer that pushes faster than its readings change must not
shift every later reading to the end of the interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from protocol.messages import Telemetry


class TelemetryCap:
    def __init__(self, send: Callable[[Telemetry], None], every_s: float) -> None:
        self._send = send
        self.every_s = every_s
        self._sent_at = float("-inf")
        self._sent: Telemetry | None = None
        self._held: Telemetry | None = None
        self._timer: asyncio.TimerHandle | None = None

    def offer(self, reading: Telemetry, now: float) -> None:
        """The latest reading, at ``now`` (monotonic seconds)."""
        wait = self._sent_at + self.every_s - now
        if wait <= 0.001:  # a timer may fire a hair early
            self.cancel()
            self._sent_at, self._sent = now, reading
            self._send(reading)
            return
        self._held = reading if reading != self._sent else None
        if self._held is not None and self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(wait, self._release)
            except RuntimeError:
                pass  # a caller without a loop: the next reading goes out instead

    def _release(self) -> None:
        self._timer = None
        held, self._held = self._held, None
        if held is not None:
            self.offer(held, time.monotonic())

    def cancel(self) -> None:
        """Forget a held-back reading (the link went down, the device closes)."""
        self._held = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
