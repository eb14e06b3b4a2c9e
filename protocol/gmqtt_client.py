"""What ``protocol.mqtt`` changes of gmqtt's own behaviour. gmqtt offers no hook for these, so each reaches
into its internals, and they are kept here, in one place, to check when gmqtt is upgraded."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import gmqtt
from gmqtt.storage import PersistentStorage

if TYPE_CHECKING:
    from .mqtt import Receiver


class AckTracker(PersistentStorage):
    """gmqtt's in-flight store, observed: resolves a future per PUBACK."""

    def __init__(self) -> None:
        super().__init__()
        self.last_mid: int | None = None
        self.waiters: dict[int, asyncio.Future[None]] = {}

    def push_message(self, mid: int, raw_package: bytes) -> None:
        super().push_message(mid, raw_package)
        self.last_mid = mid

    def remove_message_by_mid(self, mid: int) -> None:
        super().remove_message_by_mid(mid)
        fut = self.waiters.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def fail_all(self, exc: BaseException) -> None:
        waiters, self.waiters = self.waiters, {}
        for fut in waiters.values():
            if not fut.done():
                fut.set_exception(exc)


class SessionClient(gmqtt.Client):
    """A gmqtt client that reports a lost connection instead of reconnecting itself, and hands QoS 1
    messages to a synchronous ``receive`` with their PUBACK (gmqtt would run a task per message)."""

    def __init__(self, *args: Any, lost: asyncio.Event, receive: Receiver | None, **kwargs: Any) -> None:
        self._lost = lost
        super().__init__(*args, **kwargs)
        if receive is not None:
            # gmqtt 0.7 and later read packets in a handler object of their own, earlier ones in the client.
            handler = getattr(self, "_package_handler", self)

            def qos1(mid: int, packet: bytes, print_topic: str, properties: dict) -> None:
                receive(print_topic, packet, 1, partial(handler._send_puback, mid))

            handler._handle_qos_1_publish_packet = qos1

    async def reconnect(self, delay: bool = False) -> None:  # noqa: ARG002 - gmqtt's signature
        self._lost.set()


@contextmanager
def corked(client: gmqtt.Client) -> Iterator[None]:
    """Writes inside go out together when it ends (TCP_CORK): one wake-up of the broker, not one a message.
    gmqtt keeps its transport private; without one (a gmqtt that changed) the writes go out one by one."""
    transport = getattr(getattr(client, "_connection", None), "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    cork = getattr(socket, "TCP_CORK", None)
    if sock is None or cork is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        yield
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
    except OSError:  # the connection is going down: write as usual, the loss is seen elsewhere
        yield
        return
    try:
        yield
    finally:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, cork, 0)
        except OSError:
            pass
