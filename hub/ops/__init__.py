"""Keeping the hub healthy: retention of logs, alerts and the health report."""
