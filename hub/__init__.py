"""The hub: SQLite store, MQTT ingest, scheduler, file store, HTTP API and embedded broker.

Imports ``protocol`` and never ``agent``; ``hub.app.Hub`` wires the parts.
"""
