"""What a cron schedule means: its fire times on a wall clock, and a fire's batch date.

Cron fields are read on the schedule's wall clock (its timezone, UTC by default). Across DST
changes each wall-clock time fires once: a time the clocks skip fires at the same distance
after the change (02:30 on a spring-forward night fires at 03:30 local), and a time they repeat
fires once, at its first occurrence. A fire's batch date is its wall-clock date plus the
schedule's offset.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

DST_SLACK = timedelta(hours=3)  # wall-clock times near a change map to instants out of order


def _instant(local: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time as a UTC instant: a skipped time moves past the change by its gap,
    a repeated one is taken at its first occurrence."""
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def fire_times(cron: str, timezone: str, after: datetime, until: datetime) -> list[datetime]:
    """Every fire time in (after, until], as UTC instants, in order."""
    zone = ZoneInfo(timezone)
    wall = croniter(cron, after.astimezone(zone).replace(tzinfo=None) - DST_SLACK)
    found: list[datetime] = []
    while True:
        instant = _instant(wall.get_next(datetime), zone)
        if instant > until:
            return found
        if instant > after and (not found or instant > found[-1]):
            found.append(instant)


def latest_fire_times(
    cron: str, timezone: str, after: datetime, until: datetime, limit: int
) -> list[datetime]:
    """The newest ``limit`` fire times in (after, until], in order: however long the window,
    only they are looked at."""
    zone = ZoneInfo(timezone)
    wall = croniter(cron, until.astimezone(zone).replace(tzinfo=None) + DST_SLACK)
    found: list[datetime] = []
    while len(found) < limit:
        instant = _instant(wall.get_prev(datetime), zone)
        if instant <= after - DST_SLACK:
            break
        if after < instant <= until and (not found or instant < found[-1]):
            found.append(instant)
    return found[::-1]


def next_fire_times(cron: str, timezone: str, now: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times after ``now`` (fewer for a schedule that never fires)."""
    found: list[datetime] = []
    after = now
    while len(found) < count:
        window = fire_times(cron, timezone, after, after + timedelta(days=400 * 4))
        if not window:
            break  # e.g. 30 February
        found += window[: count - len(found)]
        after = found[-1]
    return found


def batch_date_of(fire_at: datetime, timezone: str, offset: timedelta) -> date:
    """The batch date of a fire: its date on the schedule's wall clock, plus the offset."""
    return fire_at.astimezone(ZoneInfo(timezone)).date() + offset
