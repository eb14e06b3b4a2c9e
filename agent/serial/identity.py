"""Who the firmware says it is and what it can do: its answer to M115, line by line.

Until it has answered, the profile's capability defaults stand. Marlin answers
with a ``FIRMWARE_NAME:…`` line and ``Cap:`` lines, then ``ok``; Klipper puts
the fields on the ``ok`` itself.
"""

from __future__ import annotations

from .profiles import FirmwareProfile
from .responses import Kind, Reply


class FirmwareIdentity:
    def __init__(self, profile: FirmwareProfile) -> None:
        self.profile = profile
        self.firmware: str | None = None
        self.capabilities: list[str] = list(profile.capabilities)
        self.autoreport = False
        self.unfinished = False
        """Fields or capabilities came and M115's ``ok`` has not yet: more may follow."""

    @property
    def emergency_parser(self) -> bool:
        return "EMERGENCY_PARSER" in self.capabilities

    def restart(self) -> None:
        """The firmware is greeted again: it will say what it can do afresh."""
        self.capabilities = list(self.profile.capabilities)
        self.autoreport = False

    def name(self, reply: Reply) -> bool:
        """A FIRMWARE_NAME answer; True if that was all of it (the fields came on the ok itself)."""
        fields = reply.fields or {}
        name, version = fields.get("FIRMWARE_NAME"), fields.get("FIRMWARE_VERSION")
        self.firmware = (f"{name} {version}" if name and version and version not in name else name) or reply.text
        self.unfinished = reply.kind is not Kind.OK
        return not self.unfinished

    def capability(self, reply: Reply) -> bool:
        """A ``Cap:`` line; True when it says, for the first time, that the firmware reports temperatures itself."""
        name = reply.name
        if reply.enabled and name not in self.capabilities:
            self.capabilities.append(name)
        elif not reply.enabled and name in self.capabilities:
            self.capabilities.remove(name)
        self.unfinished = True
        if name == "AUTOREPORT_TEMP" and reply.enabled and not self.autoreport:
            self.autoreport = True
            return True
        return False

    def finished(self) -> bool:
        """M115's ``ok`` came; True if what it said is news."""
        news, self.unfinished = self.unfinished, False
        return news
