"""Templates: compile-time errors, rendering, and date arithmetic across month and year ends."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.spec.durations import format_duration, parse_duration
from service.spec.templates import RUN_NAMES, Kind, TemplateError, compile_template

NAMES: dict[str, Kind] = {**RUN_NAMES, "params.region": "text", "params.day": "date"}
VALUES: dict[str, str | date] = {
    "batch_date": date(2026, 3, 1),
    "run_id": "20260301-000000-abcd",
    "attempt": "2",
    "task_id": "t",
    "pipeline_id": "p",
    "params.region": "eu",
    "params.day": date(2025, 12, 31),
}


def render(text: str) -> str:
    return compile_template(text, NAMES).render(VALUES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("{batch_date}", "2026-03-01"),
        ("{ batch_date - 1d }", "2026-02-28"),
        ("{batch_date + 1w}", "2026-03-08"),
        ("{batch_date - 1w + 2d}", "2026-02-24"),
        ("{batch_date:%Y%m%d}", "20260301"),
        ("dt={batch_date - 1d:%Y/%m/%d}", "dt=2026/02/28"),
        ("{params.day + 1d}", "2026-01-01"),
        (
            "run {run_id} attempt {attempt} of {task_id} in {pipeline_id}",
            "run 20260301-000000-abcd attempt 2 of t in p",
        ),
        ("s3://b/{params.region}/", "s3://b/eu/"),
        ("{{literal}} {batch_date}", "{literal} 2026-03-01"),
    ],
)
def test_rendering(text: str, expected: str) -> None:
    assert render(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{batch_dat}", "unknown placeholder {batch_dat} (did you mean {batch_date}?)"),
        ("{params.regoin}", "did you mean {params.region}?"),
        ("{params.other}", "unknown placeholder {params.other}"),
        ("{run_id - 1d}", "apply only to dates"),
        ("{batch_date + 1y}", "unknown unit 'y'"),
        ("{batch_date:%Q}", "'%Q' is not a date format directive"),
        ("{batch_date:}", "empty date format"),
        ("{batch_date * 2}", "is not a placeholder"),
        ("open { brace", "unmatched '{'"),
        ("close } brace", "unmatched '}'"),
    ],
)
def test_errors_say_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(text, NAMES)
    assert reason in str(caught.value)


def test_shell_values_are_quoted() -> None:
    template = compile_template("echo {params.region}", NAMES)
    values = {**VALUES, "params.region": "eu; rm -rf /"}
    assert template.render(values, quote=lambda v: f"'{v}'") == "echo 'eu; rm -rf /'"


dates = st.dates(min_value=date(1990, 1, 1), max_value=date(2090, 12, 31))
month_ends = st.builds(
    lambda year, month: date(year, month, 1) - timedelta(days=1),
    st.integers(1991, 2090),
    st.integers(1, 12),
)


@given(day=st.one_of(dates, month_ends), offset=st.integers(-400, 400))
def test_date_arithmetic_matches_the_calendar(day: date, offset: int) -> None:
    sign = "+" if offset >= 0 else "-"
    forward = compile_template(f"{{batch_date {sign} {abs(offset)}d}}", NAMES)
    assert (
        forward.render({**VALUES, "batch_date": day}) == (day + timedelta(days=offset)).isoformat()
    )


@given(
    day=st.one_of(dates, month_ends),
    weeks=st.integers(0, 60),
    fmt=st.sampled_from(["%Y%m%d", "%Y/%m/%d", "dt=%Y-%m-%d", "%d.%m.%Y"]),
)
def test_dates_round_trip_through_formats(day: date, weeks: int, fmt: str) -> None:
    there = compile_template(f"{{batch_date + {weeks}w:{fmt}}}", NAMES)
    back = compile_template(f"{{batch_date - {weeks}w}}", NAMES)
    rendered = there.render({**VALUES, "batch_date": day})
    moved = datetime.strptime(rendered, fmt).date()
    assert moved - day == timedelta(weeks=weeks)
    assert back.render({**VALUES, "batch_date": moved}) == day.isoformat()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("2d", 172_800),
        ("1w", 604_800),
        ("-1d", -86_400),
        ("1.5h", 5400),
        (45, 45),
    ],
)
def test_durations(text: str | int, seconds: int) -> None:
    parsed = parse_duration(text)
    assert parsed.total_seconds() == seconds
    assert parse_duration(format_duration(parsed)) == parsed


@pytest.mark.parametrize("text", ["soon", "5 minutes", "1h-", "", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
