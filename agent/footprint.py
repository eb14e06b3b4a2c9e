"""What an agent process leaves out to stay small on a Pi (``bench.network_printers`` measures its RSS).

Pydantic looks for plugins (the ``pydantic`` entry point group) the first time
it builds a validator: it imports ``importlib.metadata`` (and with it ``email``,
``csv``, ``zipfile``) and reads the metadata of every installed distribution,
about 2 MB of an agent's memory for plugins it never has. The agent uses no
pydantic plugin, so ``skip_pydantic_plugins`` answers pydantic's lookup with
none before the first validator is built. The hub, the tests and scripts keep
pydantic's own lookup.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable
from typing import Any

PLUGIN_LOADER = "pydantic.plugin._loader"
"""The module pydantic's ``create_schema_validator`` imports ``get_plugins`` from when it builds a validator."""


def _no_plugins() -> Iterable[Any]:
    return ()


def skip_pydantic_plugins() -> bool:
    """Make pydantic find no plugins without searching for them; False if it already searched (too late)."""
    if PLUGIN_LOADER in sys.modules:
        return False
    loader = types.ModuleType(PLUGIN_LOADER, "An agent's stand-in: no pydantic plugins (agent.footprint).")
    loader.get_plugins = _no_plugins  # type: ignore[attr-defined]
    sys.modules[PLUGIN_LOADER] = loader
    return True
