"""HTTP/1.1 and WebSocket clients for the agent: the printers' local APIs and the hub's file cache.

Why not aiohttp, which the hub serves with: an agent drives a few hundred printers from a Raspberry Pi,
and aiohttp's client, with what it imports, is about 13 MB of an agent's resident memory. This package
is small code over h11 (python-hyper's sans-IO HTTP/1.1 state machine: framing, chunked bodies,
keep-alive, the WebSocket upgrade), about 0.5 MB; the WebSocket frames are ours (see ``websocket``).
The printers on a farm's LAN speak plain HTTP/1.1, one request at a time per connection.

* ``http``: ``HttpClient`` (keep-alive connections, timeouts, streamed bodies) and ``Response``;
* ``multipart``: ``Multipart``, a ``multipart/form-data`` body streamed from a file;
* ``websocket``: ``WebSocket``, a text WebSocket with optional heartbeat;
* ``errors``: ``HttpError`` and its kinds.
"""

from .errors import ConnectFailed, HttpError, InvalidUrl, WebSocketClosed, WebSocketRejected
from .http import Headers, HttpClient, Response, Timeout
from .multipart import Multipart, file_chunks
from .websocket import WebSocket

__all__ = ["ConnectFailed", "Headers", "HttpClient", "HttpError", "InvalidUrl", "Multipart", "Response", "Timeout",
           "WebSocket", "WebSocketClosed", "WebSocketRejected", "file_chunks"]
