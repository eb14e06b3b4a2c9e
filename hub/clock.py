"""The hub's wall clock for things that happen at a time of day: what time it is (UTC), and waiting until then.

One seam, so a test can hand the hub a clock it moves and run weeks of a schedule in a second; the hub
itself always runs on ``SystemClock``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol

# A long wait is taken in slices and the wall clock read again after each, so a clock that jumps (NTP
# stepping it, a machine resumed from suspend) moves the wake-up too: asyncio's sleep counts monotonic time.
SLICE_S = 60.0


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, moment: datetime) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, moment: datetime) -> None:
        while (left := (moment - self.now()).total_seconds()) > 0:
            await asyncio.sleep(min(left, SLICE_S))
