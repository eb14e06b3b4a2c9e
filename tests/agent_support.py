"""What the agent's tests share: an MQTT listener, a file server, a waiting helper and a broken network."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable

from aiohttp import web

from agent.event_outbox import EventOutbox
from protocol import codec
from protocol.messages import Envelope
from protocol.mqtt import MqttSession


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Listener:
    """A test's own MQTT client that records every message on its subscriptions, decoded."""

    def __init__(self, url: str, *filters: str) -> None:
        self.client_id = f"test-{uuid.uuid4().hex[:12]}"
        self._probe = f"farmhand/v1/test/{self.client_id}/probe"
        self.messages: list[tuple[str, Envelope]] = []
        self.raw: list[tuple[str, bytes]] = []
        self.undecodable: list[tuple[str, bytes]] = []
        self._probed = asyncio.Event()
        self.session = MqttSession(url, self.client_id, on_message=self._record, persistent=False,
                                   subscriptions=[*((f, 1) for f in filters), (self._probe, 1)])

    async def _record(self, topic: str, payload: bytes, qos: int) -> None:
        if topic == self._probe:
            self._probed.set()
            return
        self.raw.append((topic, payload))
        if not payload:  # an empty payload clears a retained message
            return
        try:
            self.messages.append((topic, codec.decode(payload)))
        except codec.ProtocolError:
            self.undecodable.append((topic, payload))

    async def __aenter__(self) -> Listener:
        self.session.start()
        await self.session.wait_connected(10)
        # The broker handles subscriptions in order: once the last one delivers, all are active.
        self.session.publish(self._probe, b"probe", qos=1)
        await asyncio.wait_for(self._probed.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.stop()

    def bodies(self, topic: str | None = None, type: str | None = None) -> list:
        return [env.body for t, env in self.messages
                if (topic is None or t == topic) and (type is None or env.body.type == type)]

    def envelopes(self, topic: str) -> list[Envelope]:
        return [env for t, env in self.messages if t == topic]

    async def clear_retained(self, *topics: str) -> None:
        """Leave the shared broker as we found it."""
        for topic in topics:
            await self.session.publish_confirmed(topic, b"", retain=True)


def drop_connection(session: MqttSession) -> None:
    """Cut the TCP connection without an MQTT DISCONNECT, as a crash or a pulled cable does."""
    client = session._client  # noqa: SLF001 - the test needs the socket under the session
    assert client is not None, "the session is not connected"
    client._connection._transport.abort()  # noqa: SLF001


class FileServer:
    """A real HTTP server that serves job files, like the hub's file endpoint, and logs each request."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        # Cleared: downloads send their first bytes, then wait here (a slow link).
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._runner: web.AppRunner | None = None
        self.base = ""

    def add(self, content: bytes, *, served: bytes | None = None) -> tuple[str, str, int]:
        """Serve ``served`` (default ``content``) under ``content``'s hash: (url, sha256, size)."""
        sha = hashlib.sha256(content).hexdigest()
        self.files[sha] = content if served is None else served
        return f"{self.base}/files/{sha}", sha, len(content)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        self.requests.append((request.path, auth))
        if self.token is not None and auth != f"Bearer {self.token}":
            raise web.HTTPUnauthorized()
        body = self.files.get(request.match_info["sha"])
        if body is None:
            raise web.HTTPNotFound()
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(body[:1])
        await self.flowing.wait()
        await resp.write(body[1:])
        await resp.write_eof()
        return resp

    async def __aenter__(self) -> FileServer:
        app = web.Application()
        app.router.add_get("/files/{sha}", self._serve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.flowing.set()
        if self._runner is not None:
            await self._runner.cleanup()


def outbox_session(url: str, outbox: EventOutbox) -> MqttSession:
    """A session wired to an outbox as the agent wires it: every (re)connect replays what is unconfirmed."""

    async def ignore(topic: str, payload: bytes, qos: int) -> None:
        pass

    async def connected() -> None:
        outbox.reconnected()

    return MqttSession(url, f"outbox-{uuid.uuid4().hex[:12]}", on_message=ignore, on_connect=connected,
                       persistent=False, backoff_initial=0.1, backoff_max=0.5)
