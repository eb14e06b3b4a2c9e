"""The hub's database schema: every component's tables, put together by schema version.

Version N's SQL is every component's ``Tables(N, …)`` in the order of ``hub.app.COMPONENTS``,
applied in one transaction; a database records the versions it has (``schema_version``), so one
written by an earlier hub gets only what is new. The versions are the same as before the
components each declared their own tables, so existing databases open unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

from hub.app import COMPONENTS
from hub.component import Component


def migrations(components: Iterable[type[Component]]) -> tuple[str, ...]:
    pieces = [t for c in components for t in c.tables]
    last = max((t.version for t in pieces), default=0)
    missing = sorted(set(range(1, last + 1)) - {t.version for t in pieces})
    if missing:
        raise ValueError(f"no component declares tables of schema version(s) {missing}")
    return tuple("\n".join(t.sql for t in pieces if t.version == v) for v in range(1, last + 1))


MIGRATIONS = migrations(COMPONENTS)
