"""Stopping a component's background tasks: cancel them all, then wait for each to end."""

from __future__ import annotations

import asyncio
import contextlib


async def stop_tasks(*tasks: asyncio.Task[None] | None) -> None:
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    for task in live:
        with contextlib.suppress(asyncio.CancelledError):
            await task
