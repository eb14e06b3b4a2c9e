"""What a simulated printer's HTTP API answers when it cannot do what was asked."""

from __future__ import annotations


class Refused(Exception):
    """The printer cannot do that now; ``status`` is the HTTP status it answers with, ``text`` its words."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
