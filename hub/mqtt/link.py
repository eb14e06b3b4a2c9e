"""The hub's one MQTT session, reachable from the start: components publish through the link.

The session itself is opened when the MQTT component starts (after the HTTP
server, whose address goes into the hub's presence message); until then, and
whenever the broker is away, ``publish`` raises ``NotConnected`` and the
caller keeps its message (the command outbox re-sends on the next connect).
"""

from __future__ import annotations

import asyncio
from protocol.mqtt import MqttSession, NotConnected


class MqttLink:
    def __init__(self) -> None:
        self._session: MqttSession | None = None

    @property
    def session(self) -> MqttSession | None:
        return self._session

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.connected

    def attach(self, session: MqttSession | None) -> None:
        self._session = session

    async def publish_confirmed(self, topic: str, payload: bytes, timeout_s: float = 10.0) -> None:
        """QoS 1, returning once the broker has it (what is recorded as sent must have been)."""
        if self._session is None:
            raise NotConnected("the hub has no broker session yet")
        await asyncio.wait_for(self._session.publish_confirmed(topic, payload), timeout=timeout_s)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        if self._session is None:
            raise NotConnected("the hub has no broker session yet")
        self._session.publish(topic, payload, qos=qos, retain=retain)
