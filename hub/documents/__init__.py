"""Paper for customers and the shop floor: stored quotes and their PDFs, job travellers,
QR labels for spools, parts and printers, and CSV/XLSX exports (front door: ``Documents``)."""

from __future__ import annotations

from typing import Any

__all__ = ["Documents"]


def __getattr__(name: str) -> Any:
    # Late, so hub/config.py can take this package's config section without building the component.
    if name == "Documents":
        from .component import Documents

        return Documents
    raise AttributeError(name)
