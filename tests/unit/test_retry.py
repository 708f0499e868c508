"""Backoff with jitter, and which failures are retried: pure functions, tested exhaustively."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.engine.decide import AttemptFinished, RetryDue, RunSnapshot, TaskSnapshot, decide
from service.engine.retry import backoff_delay, classify_exit, should_retry
from service.engine.states import TaskState
from service.spec.graph import build_graph
from service.spec.models import PipelineSpec
from service.spec.tasks import RetryPolicy

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def policy(**fields: object) -> RetryPolicy:
    return RetryPolicy.model_validate(fields)


def test_backoff_grows_exponentially_up_to_its_max() -> None:
    p = policy(max_attempts=10, backoff={"base": "10s", "factor": 2, "max": "1m"}, jitter=0)
    delays = [backoff_delay(p, attempt, 0.0).total_seconds() for attempt in range(1, 6)]
    assert delays == [10, 20, 40, 60, 60]


@given(
    base=st.integers(1, 600),
    factor=st.floats(1, 10),
    cap=st.integers(600, 7200),
    jitter=st.floats(0, 1),
    attempt=st.integers(1, 50),
    sample=st.floats(-1, 1),
)
def test_jitter_stays_within_its_band_and_the_max(
    base: int, factor: float, cap: int, jitter: float, attempt: int, sample: float
) -> None:
    p = policy(max_attempts=51, backoff={"base": base, "factor": factor, "max": cap}, jitter=jitter)
    raw = min(base * factor ** (attempt - 1), cap)
    delay = backoff_delay(p, attempt, sample).total_seconds()
    assert 0 <= delay <= cap + 1e-6
    assert raw * (1 - jitter) - 1e-6 <= delay <= raw * (1 + jitter) + 1e-6


@pytest.mark.parametrize(
    ("fields", "attempt", "outcome", "code", "retryable", "expected"),
    [
        ({"max_attempts": 3}, 1, TaskState.FAILED, 1, True, True),
        ({"max_attempts": 3}, 3, TaskState.FAILED, 1, True, False),  # out of attempts
        ({"max_attempts": 3}, 1, TaskState.FAILED, 2, False, False),  # a fatal code
        ({"max_attempts": 3, "on_exit_codes": [75]}, 1, TaskState.FAILED, 1, True, False),
        ({"max_attempts": 3, "on_exit_codes": [75]}, 1, TaskState.FAILED, 75, True, True),
        ({"max_attempts": 3}, 1, TaskState.TIMED_OUT, None, True, True),
        ({"max_attempts": 3, "on_timeout": False}, 1, TaskState.TIMED_OUT, None, True, False),
        ({"max_attempts": 3}, 1, TaskState.SKIPPED, 99, True, False),
    ],
)
def test_which_failures_are_retried(
    fields: dict[str, object],
    attempt: int,
    outcome: TaskState,
    code: int | None,
    retryable: bool,
    expected: bool,
) -> None:
    assert should_retry(policy(**fields), attempt, outcome, code, retryable) is expected


def test_exit_codes_are_classified_by_the_spec() -> None:
    assert classify_exit(0, (99,), (2,)) == (TaskState.SUCCESS, False)
    assert classify_exit(99, (99,), (2,)) == (TaskState.SKIPPED, False)
    assert classify_exit(2, (99,), (2,)) == (TaskState.FAILED, False)
    assert classify_exit(1, (99,), (2,)) == (TaskState.FAILED, True)
    assert classify_exit(None, (), ()) == (TaskState.FAILED, True)  # never started


def test_the_engine_schedules_the_retry_then_queues_it() -> None:
    spec = PipelineSpec.model_validate(
        {
            "id": "p",
            "tasks": [
                {
                    "id": "a",
                    "command": ["x"],
                    "retry": {"max_attempts": 2, "backoff": {"base": "30s"}, "jitter": 0.5},
                },
                {"id": "b", "command": ["x"], "requires": ["a"]},
            ],
        }
    )
    graph = build_graph(spec)
    running = RunSnapshot(
        "r",
        "running",
        {  # type: ignore[arg-type]
            "a": TaskSnapshot("a", TaskState.RUNNING, 1),
            "b": TaskSnapshot("b", TaskState.PENDING, 0),
        },
    )
    failed = AttemptFinished("a", 1, TaskState.FAILED, exit_code=1, at=NOW, jitter_sample=-1.0)
    [retry] = decide(graph, running, failed).transitions
    assert (retry.to_state, retry.retry_at) == (TaskState.UP_FOR_RETRY, NOW + timedelta(seconds=15))
    waiting = RunSnapshot(
        "r", running.state, {**running.tasks, "a": TaskSnapshot("a", TaskState.UP_FOR_RETRY, 1)}
    )
    [queued] = decide(graph, waiting, RetryDue("a")).transitions
    assert (queued.task_id, queued.to_state) == ("a", TaskState.QUEUED)
    assert decide(graph, running, RetryDue("a")).ignored is not None
    # The second failure is the last attempt: a fails, b can never run, the run fails.
    second = RunSnapshot(
        "r", running.state, {**running.tasks, "a": TaskSnapshot("a", TaskState.RUNNING, 2)}
    )
    final = decide(graph, second, AttemptFinished("a", 2, TaskState.FAILED, exit_code=1, at=NOW))
    assert [(t.task_id, t.to_state) for t in final.transitions] == [
        ("a", "failed"),
        ("b", "upstream_failed"),
        (None, "failed"),
    ]
