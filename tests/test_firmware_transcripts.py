"""Every firmware dialect's sample conversation, replayed through that dialect's parser.

The transcripts (``tests/transcripts/<dialect>.txt``, format in their README)
are written from each firmware's own source and documentation. A ``<`` line is
what the firmware printed; the ``=`` line under it is what the parser must
make of it; a numbered ``>`` line must be framed exactly as the engine frames it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.serial.gcode import frame_text
from agent.serial.profiles import FirmwareProfile, bundled_profiles, load_profile
from agent.serial.responses import Dialect, Kind, Reply

TRANSCRIPTS = Path(__file__).parent / "transcripts"
DIALECTS = sorted(p.stem for p in TRANSCRIPTS.glob("*.txt"))


@dataclass
class Exchange:
    lineno: int
    said: str
    expected: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    kind: str = ""


def read_transcript(path: Path) -> tuple[list[tuple[int, str]], list[Exchange]]:
    sent: list[tuple[int, str]] = []
    exchanges: list[Exchange] = []
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        if not raw.strip() or raw.startswith("#"):
            continue
        tag, _, body = raw.partition(" ")
        if tag == ">":
            sent.append((lineno, body))
        elif tag == "<":
            exchanges.append(Exchange(lineno, body))
        elif tag == "=":
            assert exchanges and not exchanges[-1].kind, f"{path.name}:{lineno}: '=' without a '<' line above it"
            words = shlex.split(body)
            exchange = exchanges[-1]
            exchange.kind = words[0]
            for word in words[1:]:
                key, eq, value = word.partition("=")
                if eq:
                    exchange.expected[key] = value
                else:
                    exchange.flags.add(key)
        else:
            raise AssertionError(f"{path.name}:{lineno}: a line starts with '>', '<', '=' or '#'")
    return sent, exchanges


def parse_temps(spec: str) -> dict[str, tuple[float, float | None]]:
    temps = {}
    for item in spec.split(","):
        name, _, values = item.partition(":")
        actual, _, target = values.partition("/")
        temps[name] = (float(actual), None if target == "-" else float(target))
    return temps


def check(reply: Reply, exchange: Exchange, where: str) -> None:
    assert reply.kind is Kind(exchange.kind), f"{where}: {exchange.said!r} parsed as {reply.kind.value}"
    expected = exchange.expected
    for key, attribute in (("line", "line"), ("planner", "planner_free"), ("buffer", "buffer_free")):
        if key in expected:
            assert getattr(reply, attribute) == int(expected[key]), f"{where}: {key}"
    if "message" in expected:
        assert reply.message == expected["message"], f"{where}: message {reply.message!r}"
    if "name" in expected:
        assert reply.name == expected["name"], f"{where}: name {reply.name!r}"
    if "temps" in expected:
        got = {k: (h.actual, h.target) for k, h in (reply.temperatures or {}).items()}
        want = parse_temps(expected["temps"])
        assert {k: got.get(k) for k in want} == want, f"{where}: temperatures {got}"
    for key, value in expected.items():
        if key.startswith("field."):
            assert (reply.fields or {}).get(key[6:]) == value, f"{where}: {key} in {reply.fields}"
    flags = exchange.flags
    if reply.kind is Kind.ERROR:
        assert reply.fatal is ("fatal" in flags), f"{where}: fatal is {reply.fatal}"
        assert reply.line_error is ("line_error" in flags), f"{where}: line_error is {reply.line_error}"
    if {"enabled", "disabled"} & flags:
        assert reply.enabled is ("enabled" in flags), f"{where}: enabled is {reply.enabled}"


def test_every_dialect_has_a_transcript_and_every_transcript_a_dialect() -> None:
    assert DIALECTS == bundled_profiles()
    assert len(DIALECTS) >= 7


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_parser_reads_the_firmwares_replies(dialect: str) -> None:
    profile = load_profile(dialect, environ={})
    parser = Dialect.from_profile(profile)
    _, exchanges = read_transcript(TRANSCRIPTS / f"{dialect}.txt")
    assert len(exchanges) >= 10
    for exchange in exchanges:
        assert exchange.kind, f"{dialect}.txt:{exchange.lineno}: no '=' line says what this is"
        check(parser.classify(exchange.said), exchange, f"{dialect}.txt:{exchange.lineno}")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_host_lines_are_framed_as_the_engine_frames_them(dialect: str) -> None:
    sent, _ = read_transcript(TRANSCRIPTS / f"{dialect}.txt")
    for lineno, line in sent:
        if line.startswith("N") and "*" in line:
            number, command = line[1:].split(" ", 1)
            assert frame_text(int(number), command.rsplit("*", 1)[0]) == (line + "\n").encode(), \
                f"{dialect}.txt:{lineno}"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_each_profile_is_complete_enough_to_drive_a_printer(dialect: str) -> None:
    profile: FirmwareProfile = load_profile(dialect, environ={})
    assert profile.name == dialect and profile.description
    assert profile.rx_buffer >= 64 and profile.command_queue >= 1 and profile.planner_slots >= 1
    assert profile.cancel_script and profile.pause_script and profile.resume_script and profile.finish_script
    assert profile.fatal_errors and profile.error_prefixes
    # The simulator's words for a halt must be what the host's parser calls fatal.
    parser = Dialect.from_profile(profile)
    kill = parser.classify(profile.emulation.error.format(message=profile.emulation.kill_message))
    assert kill.kind is Kind.ERROR and kill.fatal, kill
    assert any(parser.classify(line).fatal for line in profile.emulation.thermal_runaway)
