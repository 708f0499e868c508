"""Immutable rows as the rest of the service sees them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from service.engine.states import RunState, TaskState


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

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> LockedRun:
        return cls(**{**row, "state": RunState(row["state"])})


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

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ClaimedAttempt:
        return cls(**row)

    def log_context(self) -> dict[str, str | int]:
        return {
            "run_id": self.run_id,
            "task_id": self.task_id,
            "attempt": self.attempt,
            "trace_id": self.trace_id,
        }


@dataclass(frozen=True, slots=True)
class TransitionRow:
    run_id: str
    task_id: str | None
    attempt: int | None
    from_state: str | None
    to_state: str
    reason: str


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    topic: str
    key: str
    payload: bytes
