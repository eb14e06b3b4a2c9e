"""What can go wrong talking HTTP to a printer or the hub; timeouts are the builtin ``TimeoutError``."""

from __future__ import annotations


class RequestFailed(Exception):
    """An exchange failed: the connection could not be made or broke, or the peer broke the protocol."""


class InvalidUrl(RequestFailed, ValueError):
    """Not an ``http``/``https`` (``ws``/``wss``) URL with a host."""


class ConnectFailed(RequestFailed):
    """No connection: refused, unreachable, a name that does not resolve, a TLS handshake refused."""


class WebSocketRejected(RequestFailed):
    """The server answered the WebSocket handshake with an HTTP status instead of switching protocols."""

    def __init__(self, status: int, body: str = "") -> None:
        super().__init__(f"HTTP {status} to the WebSocket handshake" + (f": {body}" if body else ""))
        self.status = status
        self.body = body


class WebSocketClosed(RequestFailed):
    """The WebSocket is closed: by the peer (``code``, ``reason``), by us, or by a broken connection."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"WebSocket closed (code {code})" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason
