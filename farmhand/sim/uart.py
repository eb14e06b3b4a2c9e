"""The clock of a serial line: when bytes written at a baud rate have gone across."""

from __future__ import annotations


class UartClock:
    """When bytes written to a UART at ``baud`` arrive: 10 bit times each, one after another.

    ``lines(now, data)`` gives each complete line in ``data`` with the time its
    last byte arrives; a line cut across two writes arrives with the later one.
    ``send(now, size)`` gives when ``size`` bytes written now have all left.
    """

    def __init__(self, baud: int) -> None:
        self.byte_s = 10.0 / baud
        self.rx_free = 0.0
        self.tx_free = 0.0
        self._partial = bytearray()

    def lines(self, now: float, data: bytes) -> list[tuple[float, bytes]]:
        start = max(now, self.rx_free)
        byte_s = self.byte_s
        arrived = []
        pos = 0
        while (end := data.find(b"\n", pos)) >= 0:
            raw = data[pos:end + 1]
            if self._partial:
                raw = bytes(self._partial) + raw
                self._partial.clear()
            arrived.append((start + (end + 1) * byte_s, raw))
            pos = end + 1
        self._partial += data[pos:]
        self.rx_free = start + len(data) * byte_s
        return arrived

    def send(self, now: float, size: int) -> float:
        self.tx_free = max(now, self.tx_free) + size * self.byte_s
        return self.tx_free
