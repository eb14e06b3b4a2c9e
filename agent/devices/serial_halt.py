"""How a serial printer's firmware stops and comes back, and how it refuses one command without stopping.

Marlin halts and says nothing more until it is reset; the host greets it again.
Klipper shuts down but goes on answering: it says "// Klipper state: Shutdown",
refuses every line already sent with the shutdown's reason (still answering
M105, so a greeting proves nothing), and "// Klipper state: Ready" says it is
back, after a FIRMWARE_RESTART from anyone. The device decides; this keeps
what it needs to tell those apart, and words each report once.
"""

from __future__ import annotations

from agent.serial.host import Sent
from agent.serial.profiles import FirmwareProfile
from agent.serial.responses import Reply


class HaltWatch:
    def __init__(self, profile: FirmwareProfile) -> None:
        self.announces_ready = "ready" in profile.state_lines.values()
        """The firmware says when it is back: after a halt the host waits for that, not for a greeting."""
        self.recovery_commands = frozenset(profile.recovery_commands)
        self.reason: str | None = None
        """Set while the firmware said it halted and its reason (the answer to the next line) is awaited."""
        self.refused = 0
        """Lines the halted firmware refused since it halted: counted in its one report, not warned of each."""

    def recovers(self, commands: list[bytes]) -> bool:
        """Whether every one of these console lines is a command that brings the halted firmware back."""
        return bool(commands) and bool(self.recovery_commands) and all(
            c.split(b" ", 1)[0].decode("ascii", "replace").upper() in self.recovery_commands for c in commands)

    def halted(self, message: str, in_flight: int, *, said_by_firmware: bool) -> str:
        """The firmware stopped: the report's words, counting what it will not run if it says so line by line."""
        self.reason = None
        self.refused = 0
        if in_flight and said_by_firmware and self.announces_ready:
            return f"{message}; {in_flight} line{'s' if in_flight > 1 else ''} sent after it not run"
        return message

    def greets_after(self, said_by_firmware: bool) -> bool:
        """Whether the host should greet the firmware until it answers (else it waits to hear it is ready)."""
        return not (said_by_firmware and self.announces_ready)


def refusal(reply: Reply, sent: Sent | None) -> tuple[str, str | None]:
    """A refusal of the line being answered (firmware answers in order), worded with that line: (message, command)."""
    if sent is None:
        return reply.message, None
    command = sent.command().decode("utf-8", "replace")
    where = f" (command {sent.index + 1} of the job)" if sent.index >= 0 else ""
    return f"the firmware refused {command!r}{where}: {reply.message}", command
