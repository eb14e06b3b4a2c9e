"""Alerts by threshold: rules over the fleet's readings, raised once, resolved by themselves,
acknowledged by an operator, and delivered to webhooks, an MQTT topic and e-mail (front door: ``Alerting``)."""

from __future__ import annotations

from typing import Any

__all__ = ["Alerting"]


def __getattr__(name: str) -> Any:
    # Late, so hub/config.py can take this package's config section without building the component.
    if name == "Alerting":
        from .component import Alerting

        return Alerting
    raise AttributeError(name)
