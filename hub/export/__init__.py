"""Events out: the outbound event log filled by triggers, its pull API, webhooks and Redis Streams."""

from __future__ import annotations

from typing import Any

__all__ = ["Export"]


def __getattr__(name: str) -> Any:
    # Late, so hub/config.py can take this package's config section without building the component.
    if name == "Export":
        from .service import Export

        return Export
    raise AttributeError(name)
