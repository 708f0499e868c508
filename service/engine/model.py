"""The engine's vocabulary: what it is shown (snapshots), what it is told (events), and what
it answers (transitions and effects, together a :class:`Decision`). Plain frozen values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.engine.states import RunState, TaskState


@dataclass(frozen=True, slots=True)
class AttemptKey:
    """Which attempt: of which task of which run, by number."""

    run_id: str
    task_id: str
    attempt: int

    def __str__(self) -> str:
        return f"{self.run_id}/{self.task_id}/{self.attempt}"

    @classmethod
    def parse(cls, text: str) -> AttemptKey:
        run_id, task_id, attempt = text.split("/")
        return cls(run_id, task_id, int(attempt))


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    task_id: str
    state: TaskState
    attempt: int
    lost: int = 0  # attempts lost through no fault of the task (not counted against retries)
    base: int = 0  # attempts before its retry budget last started afresh (an operator's rerun)
    result: Mapping[str, Any] | None = None  # what its latest attempt reported


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    run_id: str
    state: RunState
    tasks: Mapping[str, TaskSnapshot]


# --- what the engine is told ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunCreated:
    """A new run's task instances exist, all pending, and it is admitted: it starts."""


@dataclass(frozen=True, slots=True)
class AttemptFinished:
    """An attempt of a task ended with ``outcome`` (one of ``ATTEMPT_OUTCOMES``)."""

    task_id: str
    attempt: int
    outcome: TaskState
    exit_code: int | None = None
    # False for a fatal exit code: the retry policy is not consulted.
    retryable: bool = True
    # When it ended, and a sample in [-1, 1] for the backoff jitter (drawn by the caller).
    at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    jitter_sample: float = 0.0
    reason: str = ""
    cache_key: str | None = None  # a cached task's key, remembered if it succeeded
    # Lost through no fault of the task (its service, worker or supervisor went away, or the
    # service stopped): retried at once without using the task's retries, up to lost_budget
    # such retries per task instance.
    lost: bool = False
    lost_budget: int = 0
    result: Mapping[str, Any] | None = None  # what the attempt reported


@dataclass(frozen=True, slots=True)
class RetryDue:
    """The retry time of a task that is up for retry has come."""

    task_id: str


@dataclass(frozen=True, slots=True)
class WaitFailed:
    """A queued task's wait ended without its data or check: it timed out, or the check kept
    erring. The task fails, with no retry (nothing ran)."""

    task_id: str
    reason: str  # wait_timeout: …, check_error: …


EngineEvent = RunCreated | AttemptFinished | RetryDue | WaitFailed


# --- what the engine answers ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change: of a task when ``task_id`` is set, else of the run. Each becomes a
    guarded update, a row of the transition log and a status event."""

    task_id: str | None
    from_state: str
    to_state: str
    attempt: int | None
    reason: str
    retry_at: datetime | None = None  # set on moves to up_for_retry: the timer to arm
    lost: bool = False  # a retry of a lost attempt: counted apart from the task's retries
    reset: bool = False  # rerun by an operator: its retry and lost budgets start afresh


@dataclass(frozen=True, slots=True)
class ArchiveAttempt:
    """Keep the ended attempt's result (exit code, error snippet, stderr tail) in its history."""

    task_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class AnnounceOutputs:
    """The task succeeded: record its declared outputs as dataset partitions, publish them,
    and start what they trigger."""

    task_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class RememberCacheKey:
    """A cached task succeeded: later attempts with the same key may skip the work."""

    task_id: str
    attempt: int
    cache_key: str


@dataclass(frozen=True, slots=True)
class StopAttempt:
    """The run was cancelled while this attempt ran: stop its processes (SIGTERM, grace,
    SIGKILL) and run its rollback, wherever it runs."""

    task_id: str
    attempt: int


Effect = ArchiveAttempt | AnnounceOutputs | RememberCacheKey | StopAttempt


@dataclass(frozen=True, slots=True)
class Decision:
    transitions: tuple[Transition, ...] = ()
    effects: tuple[Effect, ...] = ()
    # Why the event changed nothing (a stale attempt, an ended run); None when it applied.
    ignored: str | None = None
    run_state: RunState | None = None
