"""Immutable rows, as the rest of the service reads and writes them: one type per shape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from service.engine.states import RunState, TaskState
from service.engine.triggers import NewTask, TaskCheck, TaskWait

# --- read -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    pipeline_id: str
    spec_hash: str
    batch_date: date
    trigger_key: str
    state: RunState
    params: Mapping[str, Any]
    trace_id: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunRecord:
        return cls(**{**row, "state": RunState(row["state"])})

    def log_context(self) -> dict[str, str]:
        return {"run_id": self.run_id, "pipeline_id": self.pipeline_id, "trace_id": self.trace_id}


@dataclass(frozen=True, slots=True)
class TaskRecord:
    run_id: str
    task_id: str
    state: TaskState
    attempt: int
    worker_id: str | None
    queued_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None
    error_snippet: str | None
    stderr_tail: str | None
    result: Mapping[str, Any] | None = None  # what its latest attempt reported

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TaskRecord:
        return cls(**{**row, "state": TaskState(row["state"])})


@dataclass(frozen=True, slots=True)
class LockedRun:
    """The run row, locked for this transaction: what status events need to say."""

    run_id: str
    pipeline_id: str
    spec_hash: str
    batch_date: date
    state: RunState
    trace_id: str
    params: Mapping[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None  # as locked: None for a run not started before

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> LockedRun:
        return cls(**{**row, "state": RunState(row["state"])})


@dataclass(frozen=True, slots=True)
class ClaimBudget:
    """What a claim may take now: free slots, and (None: no limit) cores, memory, pool room."""

    slots: int
    cpu_cores: float | None = None
    memory_mb: int | None = None
    pools: Mapping[str, int] = field(default_factory=dict)  # pool -> size across replicas
    remote: bool = False  # tasks for remote workers instead of local ones

    def less(self, claimed: list[ClaimedAttempt]) -> ClaimBudget:
        """What is left once ``claimed`` runs."""
        return ClaimBudget(
            self.slots - len(claimed),
            None if self.cpu_cores is None else self.cpu_cores - sum(c.cpu_cores for c in claimed),
            None if self.memory_mb is None else self.memory_mb - sum(c.memory_mb for c in claimed),
            self.pools,
            self.remote,
        )


@dataclass(frozen=True, slots=True)
class ClaimedAttempt:
    """A task this worker has just moved to running, with what it needs to launch it."""

    run_id: str
    task_id: str
    attempt: int
    started_at: datetime
    queued_at: datetime | None
    cpu_cores: float
    memory_mb: int
    pipeline_id: str
    spec_hash: str
    batch_date: date
    trace_id: str
    params: Mapping[str, Any]
    pickup_by: datetime | None = None  # remote: a worker must pick it up by then
    time_limit_seconds: float | None = None  # its timeout (own or default); None: none
    results: Mapping[str, Any] | None = None  # what the run's tasks reported: task -> result

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ClaimedAttempt:
        return cls(**row)

    def run(self) -> LockedRun:
        """The run it belongs to (locked by the claim's transaction)."""
        return LockedRun(
            self.run_id,
            self.pipeline_id,
            self.spec_hash,
            self.batch_date,
            RunState.RUNNING,
            self.trace_id,
            self.params,
        )

    def log_context(self) -> dict[str, str | int]:
        return {
            "run_id": self.run_id,
            "task_id": self.task_id,
            "attempt": self.attempt,
            "trace_id": self.trace_id,
        }


@dataclass(frozen=True, slots=True)
class ExpiredLease:
    """A running attempt whose worker stopped renewing its lease."""

    run_id: str
    task_id: str
    attempt: int
    worker_id: str | None
    past_deadline: bool = False  # the lease ran out at the attempt's deadline: it overstayed


@dataclass(frozen=True, slots=True)
class DueRetry:
    run_id: str
    task_id: str


@dataclass(frozen=True, slots=True)
class MissedDeadline:
    """An active run past its SLA deadline, flagged once."""

    run_id: str
    pipeline_id: str
    batch_date: date
    state: RunState
    deadline_at: datetime
    trace_id: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> MissedDeadline:
        return cls(**{**row, "state": RunState(row["state"])})


@dataclass(frozen=True, slots=True)
class DueCheck:
    """A check whose poke is due, taken by this poker."""

    run_id: str
    task_id: str
    position: int
    probe: Mapping[str, Any]
    poke_seconds: float
    poke_backoff: float
    max_poke_seconds: float
    pokes: int
    errors: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DueCheck:
        return cls(**row)

    def next_wait(self) -> float:
        """Seconds to the poke after this one: the interval, grown by the backoff."""
        grown = self.poke_seconds * self.poke_backoff ** min(self.pokes, 64)
        return min(grown, self.max_poke_seconds)


@dataclass(frozen=True, slots=True)
class Poke:
    """What one poke of a check answered."""

    check: DueCheck
    ready: bool
    error: bool
    result: str  # for people: "ready", "not yet: exit 1", "error: …"


@dataclass(frozen=True, slots=True)
class CacheHit:
    """The earlier success a cache key records."""

    run_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    topic: str
    key: str
    payload: bytes


# --- written ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """An incoming event's identity: (source, id) is recorded once; a repeat is a duplicate."""

    source: str
    event_id: str
    event_type: str


@dataclass(frozen=True, slots=True)
class NewRun:
    run_id: str
    pipeline_id: str
    spec_hash: str
    batch_date: date
    trigger_key: str  # one run per (pipeline, trigger key)
    params: Mapping[str, Any]
    trace_id: str
    deadline_at: datetime | None


@dataclass(frozen=True, slots=True)
class RunCreation:
    """A new run as it is written: its row, its tasks, the data and the checks they wait for
    (a task with either is gated)."""

    run: NewRun
    tasks: Sequence[NewTask]
    waits: Sequence[TaskWait] = ()
    checks: Sequence[TaskCheck] = ()

    def gated(self) -> set[str]:
        return {w.task_id for w in self.waits} | {c.task_id for c in self.checks}


@dataclass(frozen=True, slots=True)
class TaskMove:
    run_id: str
    task_id: str
    from_state: str
    to_state: str
    retry_at: datetime | None = None
    lost: bool = False  # retries a lost attempt: counted in lost_attempts
    reset: bool = False  # rerun by an operator: its budgets start afresh


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A command, applied or refused: who asked what, about which run or pipeline, and why."""

    event_id: str
    actor: str
    command: str
    run_id: str | None
    task_id: str | None
    reason: str
    outcome: str  # applied or refused
    detail: str  # why it was refused
    pipeline_id: str | None = None


@dataclass(frozen=True, slots=True)
class RunMove:
    run_id: str
    from_state: str
    to_state: str


@dataclass(frozen=True, slots=True)
class AttemptResult:
    run_id: str
    task_id: str
    attempt: int
    exit_code: int | None
    error_snippet: str | None
    stderr_tail: str | None
    ended_at: datetime
    result: Mapping[str, Any] | None = None
    started_at: datetime | None = None  # when its process started, as its executor says


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A success of a cached task, recorded under its key."""

    cache_key: str
    pipeline_id: str
    task_id: str
    run_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A remote worker's word that it still runs this attempt."""

    run_id: str
    task_id: str
    attempt: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """What produced one output of a successful attempt (see output_records)."""

    run_id: str
    task_id: str
    attempt: int
    dataset: str
    partition: str
    version: str
    uri: str
    inputs: tuple[tuple[str, str], ...]  # (dataset, partition): their versions are recorded
    params: Mapping[str, Any]
    duration_seconds: float | None
    exit_code: int | None
    result: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class DatasetPartition:
    """One announced version of a dataset partition."""

    dataset: str
    partition: str
    version: str
    producer: str | None
    event_id: str


@dataclass(frozen=True, slots=True)
class ArchivedLetter:
    """A dead letter as PostgreSQL keeps it: bounded, text without NUL."""

    topic: str
    partition: int | None
    offset: int | None
    key: str
    reason: str
    size: int
    sha256: str
    head: str
    traceback: str | None


@dataclass(frozen=True, slots=True)
class IgnoredEvent:
    source: str
    event_id: str
    event_type: str
    run_id: str | None
    task_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class TransitionRow:
    run_id: str
    task_id: str | None
    attempt: int | None
    from_state: str | None
    to_state: str
    reason: str


@dataclass(frozen=True, slots=True)
class OutboxRow:
    event_id: str
    topic: str
    key: str
    payload: bytes
