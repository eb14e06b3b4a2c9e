"""The panel's stable, deep-linkable addresses that QR codes and documents point at.

They are hash routes of the panel (``/panel/#/spool/7``), so a phone that scans a
label opens the page straight away, after the login when it has no session.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote


class PanelLinks:
    def __init__(self, base: Callable[[], str]) -> None:
        """``base``: the hub's public URL (or the configured panel URL), read when a link is made."""
        self.base = base

    def _link(self, *parts: object) -> str:
        return f"{self.base().rstrip('/')}/panel/#/" + "/".join(quote(str(p), safe="") for p in parts)

    def spool(self, spool_id: int) -> str:
        return self._link("spool", spool_id)

    def device(self, node: str, device: str) -> str:
        return self._link("device", node, device)

    def job(self, job_id: int) -> str:
        return self._link("job", job_id)

    def order(self, order_id: int) -> str:
        return self._link("order", order_id)

    def order_item(self, order_id: int, item_id: int) -> str:
        return self._link("order", order_id, "item", item_id)

    def quote(self, quote_id: int) -> str:
        return self._link("quote", quote_id)
