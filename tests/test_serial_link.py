"""The serial port's reader and its holds, on a real pseudo-terminal.

A hold lets answers gather in the kernel while the reader sleeps, to be read
in one piece when it ends. These run both on the agent's loop (a thread per
port) and on plain asyncio (the loop reads the port).
"""

from __future__ import annotations

import asyncio
import os
import pty
import time
import tty
from collections.abc import AsyncIterator, Callable

import pytest

from agent.serial.link import SerialLink

pytestmark = [pytest.mark.integration, pytest.mark.any_loop]


class Port:
    """A SerialLink on a pty's far end; the test plays the firmware on the near end."""

    def __init__(self, hold: Callable[[SerialLink], None] | None = None) -> None:
        self.master, slave = pty.openpty()
        tty.setraw(self.master)
        self.path = os.ttyname(slave)
        self._slave = slave  # kept open until the link has its own
        self.reads: list[bytes] = []
        self.lost: list[str] = []
        self._hold = hold
        self.link = SerialLink(self.path, 115200, self._on_data, self.lost.append)

    def _on_data(self, data: bytes) -> None:
        self.reads.append(data)
        # Holds are the reader's: asked for while it handles what it read, as the connection does.
        if self._hold is not None and len(self.reads) == 1:
            self._hold(self.link)

    def say(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        self.link.close()
        os.close(self._slave)
        os.close(self.master)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


@pytest.fixture
async def port_with() -> AsyncIterator[Callable[..., Port]]:
    ports: list[Port] = []

    def make(hold: Callable[[SerialLink], None] | None = None) -> Port:
        port = Port(hold)
        port.link.open()
        ports.append(port)
        return port

    yield make
    for port in ports:
        port.close()


async def test_what_comes_during_a_hold_is_read_in_one_piece_when_it_ends(port_with) -> None:
    held_for = 0.3
    port = port_with(lambda link: link.hold_reading(time.monotonic() + held_for))
    port.say(b"start\n")
    await until(lambda: len(port.reads) == 1)
    started = time.monotonic()
    port.say(b"ok\n")
    await asyncio.sleep(0.05)
    port.say(b"ok\n")
    await until(lambda: len(port.reads) == 2)
    assert time.monotonic() - started >= held_for - 0.1  # nothing was read while the hold lasted
    assert port.reads == [b"start\n", b"ok\nok\n"]
    port.say(b"ok\n")  # the hold is over: the next answer is read as it comes
    await until(lambda: len(port.reads) == 3, timeout=1.0)


async def test_without_a_hold_every_answer_is_read_as_it_comes(port_with) -> None:
    port = port_with()
    for i in range(3):
        port.say(b"ok\n")
        await until(lambda: len(port.reads) == i + 1)
    assert port.reads == [b"ok\n"] * 3 and not port.lost


async def test_a_port_whose_far_end_goes_away_is_reported_lost_once(port_with) -> None:
    port = port_with()
    port.say(b"ok\n")
    await until(lambda: port.reads == [b"ok\n"])
    os.close(port.master)
    port.master = os.open(os.devnull, os.O_RDONLY)  # what close() closes in its place
    await until(lambda: bool(port.lost))
    await asyncio.sleep(0.05)
    assert len(port.lost) == 1 and not port.link.is_open


async def test_a_pty_says_no_uart_is_behind_it(port_with) -> None:
    # Klipper's /tmp/printer and the simulator are ptys: no wire paces their answers.
    assert port_with().link.has_uart() is False
