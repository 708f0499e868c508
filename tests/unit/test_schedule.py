"""Cron schedules on a wall clock: fire times across DST, catch-up after downtime, batch dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from service.engine.schedule import due_fires
from service.spec.cron import batch_date_of, fire_times, latest_fire_times, next_fire_times

NY = "America/New_York"
ZONES = ["UTC", NY, "Europe/Berlin", "Australia/Lord_Howe", "Asia/Shanghai"]
ON_TIME = timedelta(seconds=60)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_daily_utc_schedule_fires_once_a_day_at_its_time() -> None:
    fires = fire_times("0 3 * * *", "UTC", utc("2026-11-20T03:00"), utc("2026-11-23T03:00"))
    assert fires == [utc("2026-11-21T03:00"), utc("2026-11-22T03:00"), utc("2026-11-23T03:00")]


def test_a_time_the_clocks_skip_fires_once_right_after_the_change() -> None:
    # 2026-03-08: New York skips 02:00-03:00; 02:30 fires at 03:30 EDT (07:30 UTC).
    fires = fire_times("30 2 * * *", NY, utc("2026-03-07T00:00"), utc("2026-03-10T00:00"))
    local = [f.astimezone(ZoneInfo(NY)).strftime("%d %H:%M") for f in fires]
    assert local == ["07 02:30", "08 03:30", "09 02:30"]


def test_a_time_the_clocks_repeat_fires_once() -> None:
    # 2026-11-01: New York repeats 01:00-02:00; 01:30 fires once, at its first occurrence.
    fires = fire_times("30 1 * * *", NY, utc("2026-10-31T00:00"), utc("2026-11-03T00:00"))
    assert len(fires) == 3
    assert fires[1] == utc("2026-11-01T05:30")  # 01:30 EDT


def test_the_batch_date_is_the_wall_clock_date_plus_the_offset() -> None:
    fire = utc("2026-11-21T02:00")  # 21:00 on the 20th in New York
    assert batch_date_of(fire, NY, timedelta(days=-1)) == date(2026, 11, 19)
    assert batch_date_of(fire, "UTC", timedelta(days=-1)) == date(2026, 11, 20)


def test_after_downtime_latest_runs_the_newest_missed_fire_and_all_runs_a_bounded_few() -> None:
    handled, now = utc("2026-11-01T03:00"), utc("2026-11-21T03:00:20")
    kw = {"handled_until": handled, "now": now, "max_catchup": 3, "on_time": ON_TIME}
    latest = due_fires("0 3 * * *", "UTC", catchup="latest", **kw)  # type: ignore[arg-type]
    assert latest.run == (utc("2026-11-20T03:00"), utc("2026-11-21T03:00"))  # + on time
    assert latest.handled_until == utc("2026-11-21T03:00")
    every = due_fires("0 3 * * *", "UTC", catchup="all", **kw)  # type: ignore[arg-type]
    assert every.run[0] == utc("2026-11-18T03:00")
    assert len(every.run) == 4
    none = due_fires("0 3 * * *", "UTC", catchup="none", **kw)  # type: ignore[arg-type]
    assert none.run == (utc("2026-11-21T03:00"),)
    assert none.skipped == 18  # of the newest 3 + 16 looked at: a lower bound (19 missed)


def test_long_downtime_with_a_busy_schedule_looks_at_few_fires() -> None:
    fires = latest_fire_times(
        "* * * * *", "UTC", utc("2020-01-01T00:00"), utc("2026-01-01T00:00"), 5
    )
    assert fires[-1] == utc("2026-01-01T00:00")
    assert len(fires) == 5


@given(
    zone=st.sampled_from(ZONES),
    start=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 1)),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 15, 30, 45]),
)
def test_a_daily_schedule_fires_once_per_local_day_in_order(
    zone: str, start: datetime, hour: int, minute: int
) -> None:
    after = start.replace(tzinfo=UTC)
    fires = fire_times(f"{minute} {hour} * * *", zone, after, after + timedelta(days=20))
    assert fires == sorted(set(fires))
    assert all(after < f for f in fires)
    days = [f.astimezone(ZoneInfo(zone)).date() for f in fires]
    assert len(days) == len(set(days))  # never twice on one wall-clock day
    assert 19 <= len(fires) <= 21  # a DST change moves the last fire in or out of the window
    assert next_fire_times(f"{minute} {hour} * * *", zone, after, 3) == fires[:3]
    newest = latest_fire_times(f"{minute} {hour} * * *", zone, after, fires[-1], 4)
    assert newest == fires[-4:]
