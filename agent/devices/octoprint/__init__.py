"""OctoPrint (1.11) as a networked printer: application-key login, REST commands, push-socket state.

``create`` is the registry's factory; ``request_app_key`` runs the Application Keys
plugin's approval flow that gives the agent its key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base import Emitter
from .appkeys import request_app_key
from .driver import OctoPrintPrinter

if TYPE_CHECKING:
    from agent.config import DeviceConfig

__all__ = ["OctoPrintPrinter", "create", "request_app_key"]


def create(config: DeviceConfig, emitter: Emitter, poll_interval_s: float) -> OctoPrintPrinter:
    assert config.url is not None and config.api_key is not None, "DeviceConfig requires url and api_key for octoprint"
    return OctoPrintPrinter(config.id, emitter, url=config.url, api_key=config.api_key.get_secret_value(),
                            model=config.model, poll_interval_s=poll_interval_s,
                            offline_after_s=config.offline_after_s)
