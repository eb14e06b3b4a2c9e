"""Preparing G-code lines for the wire, ahead of time, so the streaming loop only frames them.

A framed line is ``N<n> <command>*<xor>\n``: the XOR of every byte before the
``*``. XOR is associative, so each command's own XOR is computed once when the
file is prepared and the streaming loop only folds in the few bytes of ``N<n> ``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import reduce
from operator import xor
from pathlib import Path


class GcodeError(ValueError):
    """A line that cannot be sent as written; the text names the file line."""


def checksum(data: bytes) -> int:
    return reduce(xor, data, 0)


def strip_line(raw: str, *, paren_comments: bool = False) -> str:
    """The command in one source line without comments and surrounding blanks ('' if none)."""
    semicolon = raw.find(";")
    if semicolon >= 0:
        raw = raw[:semicolon]
    if paren_comments and "(" in raw:
        raw = _strip_parens(raw)
    return raw.strip()


def _strip_parens(text: str) -> str:
    out: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif not depth:
            out.append(ch)
    return "".join(out)


def frame(number: int, command: bytes, command_xor: int) -> bytes:
    """``N<number> <command>*<checksum>\\n`` given the command's precomputed XOR."""
    prefix = b"N%d " % number
    return b"%s%s*%d\n" % (prefix, command, command_xor ^ checksum(prefix))


def frame_text(number: int, command: str) -> bytes:
    data = command.encode()
    return frame(number, data, checksum(data))


@dataclass(slots=True)
class PreparedJob:
    """A job's commands, stripped and encoded, each with its XOR; ``count`` of them came from the file."""

    commands: list[bytes] = field(default_factory=list)
    xors: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.commands)

    def append(self, command: str) -> int:
        """Add one stripped command; returns its length in bytes."""
        data = command.encode("utf-8", "surrogateescape")
        self.commands.append(data)
        self.xors.append(checksum(data))
        return len(data)


def prepare_lines(
    lines: Iterable[str], *, paren_comments: bool = False, max_line_bytes: int = 96, where: str = "<gcode>"
) -> PreparedJob:
    """Strip and check every line; raise GcodeError naming the first line that cannot be sent."""
    job = PreparedJob()
    # Room for "N<8 digits> " and "*<3 digits>": a line that passes fits the firmware's command buffer.
    limit = max_line_bytes - 15
    for lineno, raw in enumerate(lines, 1):
        command = strip_line(raw, paren_comments=paren_comments)
        if not command:
            continue
        if "*" in command:
            raise GcodeError(f"{where}:{lineno}: '*' is reserved for checksums: {command[:60]!r}")
        if job.append(command) > limit:
            raise GcodeError(f"{where}:{lineno}: command longer than {limit} bytes, the firmware would cut it")
    return job


def prepare_file(path: Path, *, paren_comments: bool = False, max_line_bytes: int = 96) -> PreparedJob:
    # surrogateescape keeps bytes that are not UTF-8 (old slicers' Latin-1 comments) exactly as they were.
    with open(path, encoding="utf-8", errors="surrogateescape", newline=None) as f:
        return prepare_lines(f, paren_comments=paren_comments, max_line_bytes=max_line_bytes, where=str(path))
