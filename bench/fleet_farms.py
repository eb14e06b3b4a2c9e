"""The farms of bench.fleet's event modes: simulated agents, or a lean generator that speaks protocol v1 as
agents do at a fraction of their CPU.

Both offer ``prepare`` (the events, made before the timed part), ``append`` (the nodes make them),
``start`` (connect every node at once), ``pending`` (events the hub has not confirmed) and ``stop``.

A simulated agent (``farmhand.sim.fleet_node``) runs the agent's real delivery path: an SQLite outbox and
a gmqtt session per node. On a farm each runs on its own Raspberry Pi; in the benchmark they share the
hub's two cores and cost about what the hub does per event, so they cap the figure measured. The lean
farm (``LeanFarm``) sends the same messages with little CPU:

* the same topics and bodies: each node's birth (its state and its printers' status, QoS 1, retained)
  on every connect, and its job events on ``farmhand/v1/node/{node}/event``, QoS 1, each an envelope
  made by the protocol package (``seq`` per node, rising from the Unix time in milliseconds as an
  outbox's does, and ``prev_seq``), all encoded before the timed part starts, as whole MQTT packets;
* the outbox's delivery contract: at most ``window`` events per node sent and unconfirmed; an event
  is delivered only when the hub's ``event_ack`` on the node's ack topic (subscribed QoS 1, decoded by
  the protocol package) covers its ``seq``; after a (re)connect a node with a backlog replays what is
  unconfirmed after a random pause of up to ``replay_jitter_s``, and when nothing is confirmed for
  ``confirm_timeout_s`` it sends its window again, waiting twice as long after each fruitless replay;
* but a few MQTT connections, each carrying many nodes' topics (the benchmark's broker is anonymous and
  has no ACL; the hub knows a node by its topic and checks the envelope's sender against it), a
  minimal MQTT 3.1.1 client of its own (a packet written is a prepared byte string), and no SQLite.

What it leaves out: one connection has one Last Will, so a node's offline state on a lost connection is
not sent; events are held in memory, so they do not survive this process.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from pathlib import Path
from typing import Any

import structlog

from farmhand.sim.fleet_node import SimulatedNode, birth, progress, start_all
from protocol import codec, topics
from protocol.messages import Envelope, EventAck
from protocol.mqtt import BrokerAddress, backoff_delay

log = structlog.get_logger("farmhand.bench.fleet_farms")

KEEPALIVE_S = 30


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _length(len(body)) + body


def publish_packet(topic: str, payload: bytes, mid: int, retain: bool = False) -> bytes:
    """A QoS 1 PUBLISH."""
    return _packet(0x32 | retain, _string(topic) + struct.pack("!H", mid) + payload)


def connect_packet(client_id: str) -> bytes:
    """MQTT 3.1.1 CONNECT: a persistent session (clean session off), as an agent's."""
    return _packet(0x10, _string("MQTT") + bytes([4, 0]) + struct.pack("!H", KEEPALIVE_S) + _string(client_id))


class LeanNode:
    def __init__(self, node_id: str, devices: list[str], window: int) -> None:
        self.node_id = node_id
        self.devices = devices
        self.window = window
        self.first_seq = int(time.time() * 1000)
        self.packets: list[bytes] = []  # event i (seq first_seq + i) as a ready PUBLISH
        self.available = 0  # events the node has made so far (appended to its outbox, for an agent)
        self.confirmed = 0  # events the hub confirmed: those below this index
        self.cursor = 0  # the next event to send on this connection
        self.confirmed_at = self.sent_at = 0.0
        self.fruitless = 0
        self.replays = 0
        self.paused_until = 0.0

    def prepare(self, count: int, job_ids: dict[str, str] | None) -> None:
        topic = topics.node_event(self.node_id)
        start = len(self.packets)
        for n in range(start, start + count):
            seq = self.first_seq + n
            # Nothing is ever dropped here, so the greatest seq held below an event is the one before it.
            envelope = Envelope(sender=self.node_id, seq=seq, prev_seq=seq - 1 if n else 0,
                                body=progress(self.devices, n, job_ids))
            self.packets.append(publish_packet(topic, codec.encode(envelope), n % 65535 + 1))

    def pending(self) -> int:
        return self.available - self.confirmed

    def confirm(self, seq: int) -> None:
        done = min(seq - self.first_seq + 1, self.available)
        if done > self.confirmed:
            self.confirmed = done
            self.cursor = max(self.cursor, done)
            self.confirmed_at = time.monotonic()
            self.fruitless = 0

    def take(self) -> list[bytes]:
        """What the window lets go now."""
        now = time.monotonic()
        if now + 0.005 < self.paused_until:  # a timer may fire a little early
            return []
        end = min(self.confirmed + self.window, self.available)
        if end <= self.cursor:
            return []
        if self.cursor == self.confirmed:
            self.sent_at = now
        out, self.cursor = self.packets[self.cursor:end], end
        return out

    def overdue(self, now: float, timeout_s: float) -> bool:
        """Nothing confirmed for the timeout: send the window again (the hub de-duplicates)."""
        if self.cursor <= self.confirmed:
            return False
        if now - max(self.confirmed_at, self.sent_at) <= min(timeout_s * 2 ** min(self.fruitless, 10),
                                                           max(timeout_s, 300.0)):
            return False
        self.replays += 1
        self.fruitless += 1
        self.cursor = self.confirmed
        return True


class _Connection(asyncio.Protocol):
    """One MQTT connection carrying some of the farm's nodes."""

    def __init__(self, farm: LeanFarm, client_id: str, nodes: list[LeanNode]) -> None:
        self.farm = farm
        self.client_id = client_id
        self.nodes = {n.node_id: n for n in nodes}
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.connected = asyncio.get_running_loop().create_future()
        self.lost = asyncio.Event()
        self.out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(connect_packet(self.client_id))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(f"{self.client_id}: connection lost before CONNACK"))
        self.lost.set()

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        at, end = 0, len(buf)
        while end - at >= 2:
            length, shift, i = 0, 0, at + 1
            while i < end:
                length |= (buf[i] & 0x7F) << shift
                shift, i = shift + 7, i + 1
                if not buf[i - 1] & 0x80:
                    break
            else:
                break  # the length itself is incomplete
            if i + length > end:
                break
            start, kind, at = i, buf[at], i + length
            if kind >> 4 == 3:  # PUBLISH: the hub's confirmation for one of our nodes
                self._confirmation(bytes(buf[start:at]), (kind >> 1) & 3)
            elif kind >> 4 == 2:  # CONNACK
                if buf[start + 1] != 0:
                    self.connected.set_exception(ConnectionError(f"{self.client_id}: refused ({buf[start + 1]})"))
                else:
                    self.connected.set_result(None)
            # PUBACK (the broker has an event; only the hub's confirmation counts), SUBACK, PINGRESP: nothing
        del buf[:at]
        self.flush()

    def _confirmation(self, packet: bytes, qos: int) -> None:
        size = struct.unpack_from("!H", packet)[0]
        topic = packet[2:2 + size].decode()
        payload = packet[2 + size + (2 if qos else 0):]
        if qos:
            self.out.append(b"\x40\x02" + packet[2 + size:4 + size])
        parsed = topics.parse(topic)
        node = self.nodes.get(parsed.node or "") if parsed is not None and parsed.kind == "node_ack" else None
        if node is None:
            return
        try:
            ack = codec.decode_as(payload, EventAck)
        except codec.ProtocolError as exc:
            log.warning("event_ack_malformed", node=node.node_id, error=str(exc))
            return
        node.confirm(ack.seq)
        self.out += node.take()

    def pump(self) -> None:
        for node in self.nodes.values():
            self.out += node.take()
        self.flush()

    def flush(self) -> None:
        if self.out and self.transport is not None:
            self.transport.write(b"".join(self.out))
        self.out.clear()


class LeanFarm:
    """``nodes`` nodes of ``printers`` printers each over ``connections`` MQTT connections."""

    def __init__(self, url: str, prefix: str, nodes: int, printers: int, *, connections: int = 4,
                 window: int = 200, replay_jitter_s: float = 2.0, confirm_timeout_s: float = 30.0) -> None:
        self.address = BrokerAddress.parse(url)
        self.prefix = prefix
        self.nodes = [LeanNode(f"{prefix}{i:04d}", [f"p{d}" for d in range(printers)], window)
                      for i in range(nodes)]
        self.connections = max(1, min(connections, nodes))
        self.replay_jitter_s = replay_jitter_s
        self.confirm_timeout_s = confirm_timeout_s
        self.links: list[_Connection] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def prepare(self, per_node: int, jobs: dict[str, dict[str, str]]) -> None:
        """Encode every node's events ahead of the timed part."""
        for node in self.nodes:
            node.prepare(per_node, jobs.get(node.node_id))

    def append(self, count: int) -> None:
        """Each node makes ``count`` more of its prepared events."""
        for node in self.nodes:
            node.available = min(node.available + count, len(node.packets))
        for link in self.links:
            link.pump()

    def pending(self) -> int:
        return sum(n.pending() for n in self.nodes)

    async def start(self) -> None:
        """Every connection at once (a farm coming back); returns once all are up."""
        ready = [asyncio.get_running_loop().create_future() for _ in range(self.connections)]
        self._tasks = [asyncio.create_task(self._run(i, ready[i]), name=f"lean:{self.prefix}{i}")
                       for i in range(self.connections)]
        await asyncio.wait_for(asyncio.gather(*ready), 30)

    async def _run(self, index: int, ready: asyncio.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        mine = self.nodes[index::self.connections]
        attempt = 0
        while not self._stopping:
            try:
                _, link = await loop.create_connection(
                    lambda: _Connection(self, f"farmhand-bench-{self.prefix}{index}", mine),
                    self.address.host, self.address.port)
                await asyncio.wait_for(link.connected, 10)
            except (OSError, TimeoutError, ConnectionError) as exc:
                delay = backoff_delay(attempt, 0.2, 2.0)
                attempt += 1
                log.info("lean_connect_failed", error=str(exc), retry_in_s=round(delay, 2))
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self._connected(link, mine)
            self.links.append(link)
            if not ready.done():
                ready.set_result(None)
            await self._serve(link)
            self.links.remove(link)

    def _connected(self, link: _Connection, mine: list[LeanNode]) -> None:
        """Subscribe to the nodes' confirmations, send their births, and replay after a jittered pause."""
        assert link.transport is not None
        filters = b"".join(_string(topics.node_ack(n.node_id)) + b"\x01" for n in mine)
        link.out.append(_packet(0x82, struct.pack("!H", 1) + filters))
        mid = 2
        now = time.monotonic()
        for node in mine:
            for topic, payload in birth(node.node_id, node.devices):
                link.out.append(publish_packet(topic, payload, mid, retain=True))
                mid += 1
            node.cursor = node.confirmed
            # Only a node with a backlog waits: its new events would otherwise wait behind nothing.
            node.paused_until = now + random.random() * self.replay_jitter_s if node.pending() else 0.0
            node.confirmed_at = now
            if node.paused_until:
                asyncio.get_running_loop().call_at(node.paused_until, link.pump)
        link.pump()

    async def _serve(self, link: _Connection) -> None:
        """Keep the connection alive and look for overdue windows until it is lost."""
        pinged = time.monotonic()
        while not link.lost.is_set():
            try:
                async with asyncio.timeout(min(0.5, self.confirm_timeout_s / 4)):
                    await link.lost.wait()
            except TimeoutError:
                pass
            now = time.monotonic()
            if any([n.overdue(now, self.confirm_timeout_s) for n in link.nodes.values()]):
                log.info("lean_replay", connection=link.client_id)
                link.pump()
            if now - pinged > KEEPALIVE_S / 2 and link.transport is not None:
                link.transport.write(b"\xc0\x00")
                pinged = now

    @property
    def replays(self) -> int:
        return sum(n.replays for n in self.nodes)

    async def stop(self) -> None:
        self._stopping = True
        for link in self.links:
            if link.transport is not None:
                link.transport.write(b"\xe0\x00")  # DISCONNECT
                link.transport.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


GENERATORS = {
    "lean": "LeanFarm, a few MQTT connections carrying many nodes, events encoded beforehand, no SQLite"
            " (~2 us CPU an event timed)",
    "agents": "simulated agents, each its SQLite outbox and gmqtt session (~13 us CPU an event timed,"
              " ~30 us to spool it before)",
}


class AgentFarm:
    """Simulated agents (each its SQLite outbox and MQTT session) behind the interface of ``LeanFarm``."""

    def __init__(self, nodes: list[SimulatedNode]) -> None:
        self.nodes = nodes
        self.jobs: dict[str, dict[str, str]] = {}

    def prepare(self, per_node: int, jobs: dict[str, dict[str, str]]) -> None:
        self.jobs = jobs  # an agent makes (encodes and stores) its events as it appends them

    def append(self, count: int) -> None:
        for node in self.nodes:
            node.spool(count, self.jobs[node.node_id])

    def pending(self) -> int:
        return sum(n.outbox.pending() for n in self.nodes)

    async def start(self) -> None:
        await start_all(self.nodes)

    async def stop(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes), return_exceptions=True)


def event_farm(generator: str, url: str, workdir: Path, prefix: str, nodes: int, jitter_s: float) -> Any:
    """The event modes' farm: ``agents`` (AgentFarm) or ``lean`` (LeanFarm), 2 printers a node."""
    if generator == "lean":
        return LeanFarm(url, prefix, nodes, 2, replay_jitter_s=jitter_s)
    return AgentFarm([SimulatedNode(url, f"{prefix}{i:04d}", workdir / "agents", 2, replay_jitter_s=jitter_s)
                      for i in range(nodes)])
