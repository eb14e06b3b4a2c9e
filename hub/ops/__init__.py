"""Keeping the hub healthy: retention of logs, operators' alerts and the health report."""

from .alerts import Alert, raise_alert
from .component import Ops
from .health import Health

__all__ = ["Alert", "Health", "Ops", "raise_alert"]
