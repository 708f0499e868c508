"""Who a commit wakes: claimers only when it made work they can take."""

from __future__ import annotations

import pytest

from service.orchestrator.outcome import BatchOutcome
from service.orchestrator.work_hub import Work, WorkHub


@pytest.mark.parametrize(
    ("outcome", "woken"),
    [
        # A created run queues nothing until its admission commits: a claim now finds nothing
        # and, under way when the run's first task ends, would take that task's successor
        # out of the completion's transaction.
        (BatchOutcome(runs_created=3, outbox_written=3), {Work.OUTBOX}),
        (BatchOutcome(tasks_queued=1, outbox_written=2), {Work.TASKS, Work.OUTBOX}),
        (BatchOutcome(datasets_recorded=1), {Work.TASKS}),
        (BatchOutcome(retries_scheduled=1), {Work.RETRIES}),
        (BatchOutcome(attempts_stopped=1), {Work.STOPS}),
        (BatchOutcome(), set()),
    ],
)
def test_a_commit_wakes_those_its_outcome_gave_work(
    outcome: BatchOutcome, woken: set[Work]
) -> None:
    hub = WorkHub()
    seen: list[Work] = []
    for work in Work:
        hub.subscribe(work, lambda work=work: seen.append(work))
    hub.committed(outcome)
    assert set(seen) == woken
    assert len(seen) == len(woken)  # each once
