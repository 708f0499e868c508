"""Which queued runs start: never past max_active_runs, never two of one batch date."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from service.engine.admission import WaitingRun, runs_to_admit

DAY = date(2026, 11, 1)


def waiting(*offsets: int) -> list[WaitingRun]:
    return [WaitingRun(f"r{n}", DAY + timedelta(days=d)) for n, d in enumerate(offsets)]


def test_oldest_batch_dates_start_first_up_to_the_limit() -> None:
    assert runs_to_admit(2, [], waiting(0, 1, 2)) == ["r0", "r1"]


def test_a_full_pipeline_starts_nothing() -> None:
    assert runs_to_admit(1, [DAY + timedelta(days=5)], waiting(0)) == []


def test_a_rerun_waits_for_the_running_run_of_its_date() -> None:
    assert runs_to_admit(3, [DAY], waiting(0, 1)) == ["r1"]


@given(
    limit=st.integers(1, 5),
    running=st.lists(st.integers(0, 9), unique=True, max_size=6),
    queued=st.lists(st.integers(0, 9), max_size=12),
)
def test_admission_keeps_both_rules(limit: int, running: list[int], queued: list[int]) -> None:
    running_dates = [DAY + timedelta(days=d) for d in running]
    candidates = waiting(*sorted(queued))
    admitted = runs_to_admit(limit, running_dates, candidates)
    by_id = {run.run_id: run.batch_date for run in candidates}
    dates = [by_id[run_id] for run_id in admitted]
    assert len(running_dates) + len(admitted) <= max(limit, len(running_dates))
    assert len(set(dates)) == len(dates)  # one run per batch date …
    assert not set(dates) & set(running_dates)  # … and none beside a running one
    free = sorted({d for d in by_id.values()} - set(running_dates))
    room = max(limit - len(running_dates), 0)
    assert sorted(dates) == free[:room]  # the oldest free dates, as many as there is room
