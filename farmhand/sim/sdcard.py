"""The virtual printer's SD card: a few files the firmware can list, select and print by itself.

Marlin's card commands: ``M20`` lists, ``M23 NAME`` selects, ``M24`` starts or
resumes, ``M25`` pauses, ``M27`` reports the byte position, ``M524`` aborts.
The card feeds the firmware's command queue whenever the serial line leaves
room, as Marlin's ``get_sdcard_commands`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SdCard:
    files: dict[str, bytes] = field(default_factory=dict)
    selected: str | None = None
    position: int = 0
    printing: bool = False
    executed: list[str] = field(default_factory=list)
    """Commands run from the card, in order."""

    def listing(self) -> list[str]:
        return ["Begin file list", *(f"{name} {len(data)}" for name, data in sorted(self.files.items())),
                "End file list"]

    def select(self, name: str) -> list[str]:
        name = name.strip().lstrip("/")
        if name not in self.files:
            return [f"open failed, File: {name}."]
        self.selected, self.position, self.printing = name, 0, False
        return [f"File opened: {name} Size: {len(self.files[name])}", "File selected"]

    def start(self) -> bool:
        if self.selected is None:
            return False
        self.printing = True
        return True

    def pause(self) -> None:
        self.printing = False

    def abort(self) -> None:
        self.printing = False
        self.position = 0

    def status(self) -> str:
        if self.selected is None or (not self.printing and self.position == 0):
            return "Not SD printing"
        return f"SD printing byte {self.position}/{len(self.files[self.selected])}"

    def next_command(self) -> str | None:
        """The next command of the file being printed; None at its end (and the print is over)."""
        if not self.printing or self.selected is None:
            return None
        data = self.files[self.selected]
        while self.position < len(data):
            end = data.find(b"\n", self.position)
            end = len(data) if end < 0 else end + 1
            raw = data[self.position:end].decode("latin-1")
            self.position = end
            command = raw.split(";", 1)[0].strip()
            if command:
                self.executed.append(command)
                return command
        self.printing = False
        return None

    @property
    def finished(self) -> bool:
        return self.selected is not None and not self.printing and self.position >= len(self.files[self.selected])
