"""Backups of the database and the file store: on demand, scheduled, verified, restored."""

from __future__ import annotations

from typing import Any

__all__ = ["Backups"]


def __getattr__(name: str) -> Any:
    # Late, so hub/config.py can take this package's config section without building the component.
    if name == "Backups":
        from .service import Backups

        return Backups
    raise AttributeError(name)
