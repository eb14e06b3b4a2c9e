"""The loop both schedulers run: a pass when woken, and at least every tick."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

log = structlog.get_logger("farmhand.hub.passes")


async def run_passes(one_pass: Callable[[], object], wake: asyncio.Event, tick_s: float, name: str) -> None:
    """Run ``one_pass`` forever; a failing pass is logged and the next one runs anyway."""
    while True:
        wake.clear()
        try:
            one_pass()
        except Exception:
            log.exception("pass_failed", loop=name)
        # Not wait_for: on 3.11 it swallows a cancel that lands as the wake-up
        # completes, and stop() would then wait for this loop forever.
        try:
            async with asyncio.timeout(tick_s):
                await wake.wait()
        except TimeoutError:
            pass
