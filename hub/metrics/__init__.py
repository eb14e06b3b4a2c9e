"""Prometheus metrics of the hub at ``GET /metrics``."""

from .component import Metrics

__all__ = ["Metrics"]
