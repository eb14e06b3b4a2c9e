"""Host action commands: what the printer asks of its host with ``//action:<name> <args>``.

Marlin (HOST_ACTION_COMMANDS, HOST_PROMPT_SUPPORT), Prusa and Klipper send
them when a button, a sensor or the firmware itself wants the host to act:
``pause``/``resume``/``cancel`` ask the host to do it (with its scripts),
``paused``/``resumed`` say the firmware already did (no scripts),
``out_of_filament`` is a runout (pause, and tell someone), ``notification``
is a message for the user and ``prompt_*`` a question on the printer's screen.
This module only decides; the device acts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Decision:
    act: Literal["pause", "resume", "cancel", "nothing"] = "nothing"
    reason: str = ""
    script: bool = True
    """Run the profile's pause/resume script (no: the firmware parked or went on by itself)."""
    alert: str | None = None
    """Something a person should hear about (a filament runout)."""


@dataclass(slots=True)
class PrinterMessages:
    notification: str | None = None
    prompt: list[str] | None = None
    """The question the printer shows: its text, then its choices."""

    def decide(self, action: str, args: str, *, printing: bool, paused: bool) -> Decision:
        if action == "pause" and printing:
            return Decision("pause", "paused on the printer")
        if action == "paused" and printing:
            return Decision("pause", "the printer paused itself", script=False)
        if action == "resume" and paused:
            return Decision("resume")
        if action == "resumed" and paused:
            return Decision("resume", script=False)
        if action == "cancel" and (printing or paused):
            return Decision("cancel", "cancelled on the printer")
        if action == "out_of_filament":
            where = f" ({args})" if args else ""
            return Decision("pause" if printing else "nothing", f"out of filament{where}",
                            alert=f"filament runout{where}")
        if action == "notification":
            self.notification = args
        elif action == "prompt_begin":
            self.prompt = [args]
        elif action in ("prompt_choice", "prompt_button") and self.prompt is not None:
            self.prompt.append(args)
        elif action == "prompt_end":
            self.prompt = None
        return Decision()
