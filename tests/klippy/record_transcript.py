"""Say CONVERSATION to the real Klippy's pty and print what it answered, as transcript lines (> and <).

tests/transcripts/klipper.txt was recorded with this; its ``=`` lines (what the
parser must make of each reply) were then written under each ``<`` line:

    PYTHONPATH=. .venv/bin/python tests/klippy/record_transcript.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from tests.klippykit import running_klippy
from tests.serial_support import converse

CONVERSATION = [
    "M105", "M115", "M83", "G1 E1.5 F600", "M114", "FOO", "frobnicate speed=3", "M117 printing",
    "M73 P12", "M109 S0", "M400", "M112", "G1 E1 F600", "M105", "FIRMWARE_RESTART", "M114", "M105",
]


async def record() -> list[tuple[str, list[str]]]:
    with tempfile.TemporaryDirectory() as tmp, running_klippy(Path(tmp)) as klippy:
        return await converse(klippy.pty, CONVERSATION)


def main() -> None:
    for sent, replies in asyncio.run(record()):
        print(f"> {sent}")
        for reply in replies:
            print(f"< {reply}")


if __name__ == "__main__":
    main()
