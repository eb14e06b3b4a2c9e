"""The operator console over OctoPrint: which lines of OctoPrint's log answer our commands.

OctoPrint has no request/reply console: commands go into its queue by REST and the
firmware's answers appear in the log its push socket carries, among OctoPrint's own
traffic. The firmware answers commands in order, each with an ``ok``, so counting
the commands OctoPrint logs as sent (ours and its own) against the ``ok``s tells
which answers are ours and when the last of them has come.
"""

from __future__ import annotations

import asyncio
import re

LOG_FILTER = r"^(?:Recv: |Send: (?!N\d))"
"""The log lines the driver subscribes to: the firmware's, and the commands sent outside a print
(a print's numbered lines would be most of the traffic and answer no console command)."""

# Lines of the firmware's own chatter that answer no console command.
_CHATTER = re.compile(r"^(?:wait|echo:busy.*|T\d?:.*|Not SD printing|SD printing byte.*)$")


def console_reply(log_line: str) -> str | None:
    """A line the firmware sent that may answer a console command, without the periodic chatter."""
    if not log_line.startswith("Recv:"):
        return None
    text = log_line[len("Recv:"):].strip()
    return None if not text or _CHATTER.match(text) else text


def console_sent(log_line: str) -> str | None:
    """The command in a line OctoPrint logged as sent to the firmware."""
    return log_line[len("Send:"):].strip() or None if log_line.startswith("Send:") else None


def _word(command: str) -> str:
    return command.split()[0].upper() if command.split() else ""


class OwedAnswers:
    """How many commands OctoPrint has sent that the firmware has not yet answered with an ``ok``.

    Counted over the whole link, so a console request knows how many of the next ``ok``s answer
    commands sent before its own (OctoPrint's temperature polls, its SD queries).
    """

    def __init__(self) -> None:
        self.count = 0

    def seen(self, log_line: str) -> None:
        if console_sent(log_line) is not None:
            self.count += 1
        elif self.count and (console_reply(log_line) or "").startswith("ok"):
            self.count -= 1

    def reset(self) -> None:
        """OctoPrint (re)connected to its printer: nothing sent before is owed any more."""
        self.count = 0


class ConsoleReplies:
    """The firmware's lines for one console request; ``done`` once each of its commands had its ``ok``.

    ``owed`` is how many commands were in flight when the request was made: their ``ok``s come first.
    """

    def __init__(self, commands: list[str], owed: int = 0) -> None:
        self._waiting = [_word(c) for c in commands]
        self._in_flight: list[bool] = [False] * owed
        """Commands sent and not yet answered, oldest first: True for ours."""
        self._started = False
        self.lines: list[str] = []
        self.done = asyncio.Event()

    def seen(self, log_line: str) -> None:
        if self.done.is_set():
            return
        sent = console_sent(log_line)
        if sent is not None:
            ours = bool(self._waiting) and _word(sent) == self._waiting[0]
            if ours:
                self._waiting.pop(0)
                self._started = True
            self._in_flight.append(ours)
            return
        reply = console_reply(log_line)
        if reply is None:
            return  # chatter
        answered = reply.startswith("ok") and bool(self._in_flight)
        if answered:
            # An ok answers the oldest command in flight, ours or not, even before ours went out.
            self._in_flight.pop(0)
        if not self._started:
            return  # an answer from before our first command went out
        self.lines.append(reply)
        if answered and not self._waiting and True not in self._in_flight:
            self.done.set()
