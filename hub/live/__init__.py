"""Live updates: the in-process bus components publish changes to, the feed that turns agents'
messages and sent commands into snapshots, and the ``/api/v1/live`` WebSocket the panel listens on."""

from .component import Live

__all__ = ["Live"]
