"""Asking a node to publish its birth and every device status again (a Sparkplug-style rebirth).

The hub asks when what it hears does not add up: a gap in a node's event seq, a
status of a device its birth did not list. The request is not recorded in the
command outbox (asking twice is harmless), and a node is asked at most once per
``REBIRTH_EVERY_S``: a gap or a stranger seen again is the same news.
"""

from __future__ import annotations

import time

import structlog

from protocol import codec, topics
from protocol.messages import Rebirth
from protocol.mqtt import NotConnected

from .outbox import Publisher

log = structlog.get_logger("farmhand.hub.rebirth")

REBIRTH_EVERY_S = 30.0


class RebirthRequests:
    def __init__(self, sender: str, publisher: Publisher) -> None:
        self.sender = sender
        self.publisher = publisher
        self.requested = 0
        self._asked: dict[str, float] = {}

    def ask(self, node: str, reason: str) -> None:
        now = time.monotonic()
        if now - self._asked.get(node, -REBIRTH_EVERY_S) < REBIRTH_EVERY_S:
            return
        self._asked[node] = now
        self.requested += 1
        try:
            self.publisher.publish(topics.node_command(node),
                                   codec.encode(codec.make(self.sender, Rebirth(reason=reason))), qos=1)
        except NotConnected:
            return
        log.info("rebirth_requested", node=node, reason=reason)
