"""HTTP/1.1 and WebSocket clients for the agent: the printers' local APIs and the hub's file cache.

Why not aiohttp, which the hub serves with: an agent drives a few hundred printers from a Raspberry Pi,
and aiohttp's client, with what it imports, is about 13 MB of an agent's resident memory; it is also
more than a client of a LAN printer needs. The printers speak plain HTTP/1.1, one request at a time per
connection, and a client's side of HTTP/1.1 (``wire``) and of WebSocket (``websocket``) is small code
over asyncio's streams, as cheap per request as aiohttp's C parser (h11 and wsproto, tried first, cost
an agent 40 % more CPU a request and 14 us more a WebSocket message).

* ``http``: ``HttpClient`` (keep-alive connections, timeouts, streamed bodies) and ``HttpResponse``;
* ``multipart``: ``Multipart``, a ``multipart/form-data`` body streamed from a file;
* ``websocket``: ``WebSocket``, a text WebSocket with optional heartbeat;
* ``wire``: HTTP/1.1 heads and body framing;
* ``errors``: ``RequestFailed`` and its kinds.
"""

from .errors import ConnectFailed, InvalidUrl, RequestFailed, WebSocketClosed, WebSocketRejected
from .http import Headers, HttpClient, HttpResponse, Timeout
from .multipart import Multipart, file_chunks
from .websocket import WebSocket

__all__ = ["ConnectFailed", "Headers", "HttpClient", "HttpResponse", "InvalidUrl", "Multipart", "RequestFailed",
           "Timeout", "WebSocket", "WebSocketClosed", "WebSocketRejected", "file_chunks"]
