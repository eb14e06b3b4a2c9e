"""Preparing G-code lines for the wire, so the streaming loop only frames them.

A framed line is ``N<n> <command>*<xor>\n``: the XOR of every byte before the
``*``. XOR is associative, so each command's own XOR is computed once, when the
line is read, and framing only folds in the few bytes of ``N<n> ``.

A job file is checked whole before it starts (``GcodeFile.scan``: a line that
cannot be sent is refused with its line number, before anything moves), then
read again line by line as it streams, so a five-million-line print costs an
agent on a Raspberry Pi no more memory than a short one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import reduce
from operator import xor
from pathlib import Path
from typing import TextIO


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

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        return zip(self.commands, self.xors)

    @property
    def size(self) -> int:
        return sum(len(c) for c in self.commands)

    def append(self, command: str) -> int:
        """Add one stripped command; returns its length in bytes."""
        data = command.encode("utf-8", "surrogateescape")
        self.commands.append(data)
        self.xors.append(checksum(data))
        return len(data)


def _commands(
    lines: Iterable[str], *, paren_comments: bool, max_line_bytes: int, where: str
) -> Iterator[bytes]:
    """Each line's command, encoded, checked; raises GcodeError naming the first line that cannot be sent."""
    # Room for "N<8 digits> " and "*<3 digits>": a line that passes fits the firmware's command buffer.
    limit = max_line_bytes - 15
    for lineno, raw in enumerate(lines, 1):
        command = strip_line(raw, paren_comments=paren_comments)
        if not command:
            continue
        if "*" in command:
            raise GcodeError(f"{where}:{lineno}: '*' is reserved for checksums: {command[:60]!r}")
        data = command.encode("utf-8", "surrogateescape")
        if len(data) > limit:
            raise GcodeError(f"{where}:{lineno}: command longer than {limit} bytes, the firmware would cut it")
        yield data


def prepare_lines(
    lines: Iterable[str], *, paren_comments: bool = False, max_line_bytes: int = 96, where: str = "<gcode>"
) -> PreparedJob:
    """Strip and check every line, in memory (scripts, tests, short jobs)."""
    commands = list(_commands(lines, paren_comments=paren_comments, max_line_bytes=max_line_bytes, where=where))
    return PreparedJob(commands, [checksum(c) for c in commands])


def _open(path: Path) -> TextIO:
    # surrogateescape keeps bytes that are not UTF-8 (old slicers' Latin-1 comments) exactly as they were.
    return open(path, encoding="utf-8", errors="surrogateescape", newline=None)


def prepare_file(path: Path, *, paren_comments: bool = False, max_line_bytes: int = 96) -> PreparedJob:
    with _open(path) as f:
        return prepare_lines(f, paren_comments=paren_comments, max_line_bytes=max_line_bytes, where=str(path))


@dataclass(slots=True)
class GcodeFile:
    """A job file that passed ``scan``: ``count`` commands of ``size`` bytes, read again as it streams."""

    path: Path
    count: int
    size: int
    paren_comments: bool = False
    max_line_bytes: int = 96

    @classmethod
    def scan(cls, path: Path, *, paren_comments: bool = False, max_line_bytes: int = 96) -> GcodeFile:
        """Check every line; raise GcodeError (bad line) or OSError (unreadable file)."""
        count = size = 0
        with _open(path) as f:
            for data in _commands(f, paren_comments=paren_comments, max_line_bytes=max_line_bytes, where=str(path)):
                count += 1
                size += len(data)
        return cls(Path(path), count, size, paren_comments, max_line_bytes)

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        """(command, xor) for each command; stops short, never past ``count``, if the file shrank meanwhile."""
        with _open(self.path) as f:
            commands = _commands(f, paren_comments=self.paren_comments, max_line_bytes=self.max_line_bytes,
                                 where=str(self.path))
            for _, data in zip(range(self.count), commands):
                yield data, reduce(xor, data, 0)
