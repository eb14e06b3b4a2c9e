"""Plastic a multi-material print spends on its wipe tower: a purge at every tool change, and the tower's walls.

Slicers order each layer's tools so that it starts with the tool the layer
below ended with, which makes one change fewer per layer than tools used.
The tower is ``width`` wide and as deep as one layer's purges need; it has a
wall on every layer up to the last tool change, and a brim.
"""

from __future__ import annotations

import numpy as np


def tool_changes(present: dict[int, np.ndarray]) -> np.ndarray:
    """Tool changes on each layer, given which layers each tool prints on."""
    tools = sorted(present)
    layers = len(present[tools[0]]) if tools else 0
    changes = np.zeros(layers, dtype=int)
    if len(tools) < 2:
        return changes
    current: int | None = None
    for layer in range(layers):
        used = [t for t in tools if present[t][layer]]
        if not used:
            continue
        order = ([current] if current in used else []) + [t for t in used if t != current]
        changes[layer] = len(order) - 1 + (current is not None and order[0] != current)
        current = order[-1]
    return changes


def tower_volume(changes: np.ndarray, thickness: np.ndarray, *, purge_mm3: float, width: float,
                 brim_width: float, spacing: float) -> tuple[float, int]:
    """(mm³ of purge and tower, number of tool changes)."""
    total = int(changes.sum())
    if total == 0:
        return 0.0, 0
    last = int(np.nonzero(changes)[0].max())
    depth = max(float(np.max(changes * purge_mm3 / (width * thickness))), spacing)
    walls = 2 * (width + depth) * spacing * float(thickness[: last + 1].sum())
    loops = int(brim_width / spacing)
    brim = sum(2 * (width + depth) + 2 * np.pi * (k + 0.5) * spacing for k in range(loops)) * spacing * thickness[0]
    return total * purge_mm3 + walls + float(brim), total
