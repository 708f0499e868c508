"""Retry decisions and backoff: pure functions of the task's retry policy."""

from __future__ import annotations

from datetime import timedelta

from service.engine.states import TaskState
from service.spec.tasks import RetryPolicy


def backoff_delay(policy: RetryPolicy, attempt: int, jitter_sample: float) -> timedelta:
    """Delay before attempt ``attempt + 1``: min(base * factor^(attempt-1), max), jittered.

    ``jitter_sample`` is drawn by the caller from [-1, 1] (the engine stays deterministic); the
    delay is scaled by ``1 + jitter * sample`` and never exceeds ``max`` nor goes below zero.
    """
    backoff = policy.backoff
    base = backoff.base.total_seconds()
    raw = min(base * backoff.factor ** max(attempt - 1, 0), backoff.max.total_seconds())
    sample = min(max(jitter_sample, -1.0), 1.0)
    jittered = raw * (1 + policy.jitter * sample)
    return timedelta(seconds=min(max(jittered, 0.0), backoff.max.total_seconds()))


def classify_exit(
    exit_code: int | None, skip: tuple[int, ...], fatal: tuple[int, ...]
) -> tuple[TaskState, bool]:
    """What an attempt's exit code means: (outcome, retryable)."""
    if exit_code == 0:
        return TaskState.SUCCESS, False
    if exit_code in skip:
        return TaskState.SKIPPED, False
    return TaskState.FAILED, exit_code not in fatal


def should_retry(
    policy: RetryPolicy, attempt: int, outcome: TaskState, exit_code: int | None, retryable: bool
) -> bool:
    """Whether a failed or timed-out attempt gets another one."""
    if not retryable or attempt >= policy.max_attempts:
        return False
    if outcome is TaskState.TIMED_OUT:
        return policy.on_timeout
    if outcome is not TaskState.FAILED:
        return False
    return policy.on_exit_codes is None or (
        exit_code is not None and exit_code in policy.on_exit_codes
    )
