"""When scheduled backups run, and which backups retention keeps.

Retention keeps, among scheduled backups, the newest of each of the last ``keep_daily`` days that have
one and the newest of each of the last ``keep_weekly`` ISO weeks that have one (the two sets overlap);
manual backups are kept until deleted by hand.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEDULE = re.compile(r"^daily (\d{2}):(\d{2})$")


class BackupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dir: Path | None = Field(None, description="where backups go; default <data_dir>/backups (better: another disk)")
    schedule: str | None = Field(None, description="'daily HH:MM' (UTC), e.g. 'daily 02:00'; unset: no schedule")
    keep_daily: int = Field(7, ge=0, description="scheduled backups kept: the newest of each of this many days")
    keep_weekly: int = Field(4, ge=0, description="…and the newest of each of this many ISO weeks")
    compress_level: int = Field(6, ge=1, le=9, description="gzip level of the stored objects")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            at = SCHEDULE.match(value.strip())
            if at is None or int(at[1]) > 23 or int(at[2]) > 59:
                raise ValueError(f"schedule {value!r}: write 'daily HH:MM' in UTC, e.g. 'daily 02:00'")
        return value


def next_run(schedule: str, now: datetime) -> datetime:
    """The first moment after ``now`` the schedule names."""
    at = SCHEDULE.match(schedule.strip())
    assert at is not None  # the config validated it
    moment = datetime.combine(now.astimezone(UTC).date(), time(int(at[1]), int(at[2]), tzinfo=UTC))
    return moment if moment > now else moment + timedelta(days=1)


def keep(created: dict[str, datetime], keep_daily: int, keep_weekly: int) -> set[str]:
    """Of the backups ``created`` (id → time), those retention keeps."""
    kept: set[str] = set()
    days: set[object] = set()
    weeks: set[object] = set()
    for backup_id, moment in sorted(created.items(), key=lambda item: item[1], reverse=True):
        day, week = moment.astimezone(UTC).date(), moment.astimezone(UTC).isocalendar()[:2]
        if day not in days and len(days) < keep_daily:
            days.add(day)
            kept.add(backup_id)
        if week not in weeks and len(weeks) < keep_weekly:
            weeks.add(week)
            kept.add(backup_id)
    return kept
