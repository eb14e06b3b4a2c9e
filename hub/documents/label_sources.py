"""What goes on each kind of label, read from the farm's records."""

from __future__ import annotations

from typing import Any

from ..api import ApiProblem
from ..store import Store
from .labels import Label
from .links import PanelLinks


def _spool_label(row: dict[str, Any], links: PanelLinks) -> Label:
    left = max(row["initial_weight"] - row["used_weight"], 0.0)
    colour = row["color_hex"] or ""
    lines = [f"{row['material']} {('#' + colour.lstrip('#').upper()) if colour else ''}".strip(),
             " ".join(x for x in (row["vendor"], row["name"]) if x) or "",
             f"{left:.0f} g left of {row['initial_weight']:.0f} g"]
    if row["lot_nr"]:
        lines.append(f"Lot {row['lot_nr']}")
    return Label(title=f"Spool #{row['id']}", lines=[x for x in lines if x], url=links.spool(row["id"]),
                 swatch=("#" + colour.lstrip("#")) if colour else None)


class LabelSources:
    def __init__(self, store: Store, links: PanelLinks) -> None:
        self.store = store
        self.links = links

    _SPOOLS = ("SELECT s.*, f.material, f.color_hex, f.name, v.name AS vendor FROM spools s"
               " JOIN filaments f ON f.id = s.filament_id LEFT JOIN vendors v ON v.id = f.vendor_id")

    def spool(self, spool_id: int) -> list[Label]:
        row = self.store.one(self._SPOOLS + " WHERE s.id = ?", (spool_id,))
        if row is None:
            raise ApiProblem(404, "Spool not found", f"no spool {spool_id}")
        return [_spool_label(row, self.links)]

    def spools(self) -> list[Label]:
        """Every spool in stock (archived ones are gone from the shelf)."""
        return [_spool_label(r, self.links) for r in self.store.all(self._SPOOLS + " WHERE s.archived = 0"
                                                                                    " ORDER BY s.id")]

    def order(self, order_id: int) -> list[Label]:
        """One label per printed copy: the box it goes in says order, item and copy n of N."""
        order = self.store.one("SELECT * FROM orders WHERE id = ?", (order_id,))
        if order is None:
            raise ApiProblem(404, "Order not found", f"no order {order_id}")
        items = self.store.all("SELECT i.*, f.name AS file FROM order_items i JOIN files f ON f.sha256 ="
                               " i.file_sha256 WHERE i.order_id = ? ORDER BY i.id", (order_id,))
        title = f"Order #{order_id}" + (f" · {order['reference']}" if order["reference"] else "")
        return [Label(title=title, lines=[order["customer"], f"Item {n}: {item['file']}",
                                          f"{item['material'] or ''} · copy {copy} of {item['copies']}".lstrip(" ·")],
                      url=self.links.order_item(order_id, item["id"]))
                for n, item in enumerate(items, start=1) for copy in range(1, item["copies"] + 1)]

    def device(self, node: str, device: str) -> list[Label]:
        row = self.store.one("SELECT * FROM devices WHERE node = ? AND id = ?", (node, device))
        if row is None:
            raise ApiProblem(404, "Device not found", f"no device {node}/{device}")
        return [self._device(row)]

    def printers(self) -> list[Label]:
        return [self._device(r) for r in self.store.all("SELECT * FROM devices WHERE render IS NULL"
                                                        " ORDER BY node, id")]

    def _device(self, row: dict[str, Any]) -> Label:
        return Label(title=row["id"], lines=[f"node {row['node']}", row["model"] or row["kind"] or "printer"],
                     url=self.links.device(row["node"], row["id"]))
