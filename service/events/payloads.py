"""The ``data`` of every event type, typed: parsed once at the edge, never read as a dict again.

Each class mirrors ``schemas/<TYPE>.v1.json``, the public contract (the schemas validate what
arrives; these classes carry it). Dates travel as ``YYYY-MM-DD``, times as RFC 3339 UTC, states
as their names. An optional field that is ``None`` is left out of the JSON, except where the
contract requires the key with a null (``previous_state``).
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar, Self

from service.clock import parse_timestamp, utc_timestamp
from service.engine.states import RunState, TaskState


class _Payload:
    """JSON in and out, driven by the field types (a few kinds: text, numbers, dates, times,
    states, mappings)."""

    __slots__ = ()
    TYPE: ClassVar[str]
    _KEEP_NONE: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Self:
        """From ``data`` that passed the type's schema."""
        values = {}
        for name, decode, _ in _codecs(cls):
            if name in data:
                value = data[name]
                values[name] = None if value is None else decode(value)
        return cls(**values)

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, _, encode in _codecs(type(self)):
            value = getattr(self, name)
            if value is not None:
                data[name] = encode(value)
            elif name in self._KEEP_NONE:
                data[name] = None
        return data


@dataclass(frozen=True, slots=True)
class DatasetReady(_Payload):
    """In (triggers topic): a partition of a dataset is complete and may be read."""

    TYPE: ClassVar[str] = "dataset.ready"
    dataset: str
    partition: str
    version: str | None = None  # of the partition's content; the event id when absent
    producer: str | None = None


@dataclass(frozen=True, slots=True)
class RunRequested(_Payload):
    """In (triggers topic): start a run of a pipeline by hand."""

    TYPE: ClassVar[str] = "run.requested"
    pipeline_id: str
    batch_date: date
    params: Mapping[str, Any] | None = None
    requested_by: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class TaskCompleted(_Payload):
    """In (completions topic, or the local executor): an attempt of a task ended."""

    TYPE: ClassVar[str] = "task.completed"
    run_id: str
    task_id: str
    attempt: int
    outcome: TaskState  # success, failed, skipped or timed_out
    exit_code: int | None = None
    signal: str | None = None
    error_snippet: str | None = None
    stderr_tail: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    worker_id: str | None = None
    retryable: bool = True  # False for a fatal exit code: the retry policy is not consulted
    reason: str | None = None
    cache_key: str | None = None  # the key a success of a cached task is recorded under
    lost: bool = False  # through no fault of the task: retried without using its retries
    result: Mapping[str, Any] | None = None  # what the task reported (at most 64 KiB)


@dataclass(frozen=True, slots=True)
class RunCommand(_Payload):
    """In (triggers topic, or the API): an operator acts on a run; see the schema."""

    TYPE: ClassVar[str] = "run.command"
    run_id: str
    command: str  # cancel, retry, retry_task, mark, resume
    requested_by: str
    task_id: str | None = None
    downstream: bool | None = None
    state: TaskState | None = None  # mark: success or skipped
    reason: str | None = None
    current_version: bool | None = None  # retry: follow the pipeline's current version


@dataclass(frozen=True, slots=True)
class TaskHeartbeat(_Payload):
    """In (completions topic, from remote workers): this attempt still runs here."""

    TYPE: ClassVar[str] = "task.heartbeat"
    run_id: str
    task_id: str
    attempt: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class TaskRequested(_Payload):
    """Out (requests topic, to remote workers): run this attempt."""

    TYPE: ClassVar[str] = "task.requested"
    run_id: str
    task_id: str
    attempt: int
    pipeline_id: str
    batch_date: date
    trace_id: str
    lease_seconds: float
    launch: Mapping[str, Any]  # the attempt fully rendered: see service.execution.launch
    # A worker that takes the request later discards it: it has been requested again.
    pickup_by: datetime | None = None
    # What the attempt holds of the worker's node while it runs (its resources).
    cpu_cores: float | None = None
    memory_mb: int | None = None


@dataclass(frozen=True, slots=True)
class TaskCancel(_Payload):
    """Out (cancels topic, to every remote worker): stop this attempt and roll it back."""

    TYPE: ClassVar[str] = "task.cancel"
    run_id: str
    task_id: str
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class TaskLog(_Payload):
    """Out (logs topic, from remote workers): a piece of an attempt's log, at its offset."""

    TYPE: ClassVar[str] = "task.log"
    run_id: str
    task_id: str
    attempt: int
    offset: int
    data: str  # base64 of the bytes


@dataclass(frozen=True, slots=True)
class CommandRecorded(_Payload):
    """Out (status topic): an operator's command, applied or refused — the audit trail."""

    TYPE: ClassVar[str] = "command.recorded"
    command_id: str
    actor: str
    command: str
    outcome: str  # applied or refused
    at: datetime
    detail: str | None = None
    reason: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    pipeline_id: str | None = None


@dataclass(frozen=True, slots=True)
class RunStatus(_Payload):
    """Out (status topic): a run changed state."""

    TYPE: ClassVar[str] = "run.status"
    _KEEP_NONE: ClassVar[frozenset[str]] = frozenset({"previous_state"})
    run_id: str
    pipeline_id: str
    batch_date: date
    state: RunState
    previous_state: RunState | None
    reason: str
    trace_id: str
    at: datetime
    spec_hash: str | None = None


@dataclass(frozen=True, slots=True)
class TaskStatus(_Payload):
    """Out (status topic): a task instance changed state."""

    TYPE: ClassVar[str] = "task.status"
    _KEEP_NONE: ClassVar[frozenset[str]] = frozenset({"previous_state"})
    run_id: str
    pipeline_id: str
    task_id: str
    attempt: int
    batch_date: date
    state: TaskState
    previous_state: TaskState | None
    reason: str
    trace_id: str
    at: datetime
    spec_hash: str | None = None  # the pipeline version the run follows
    max_attempts: int | None = None  # of the task's retry policy in that version
    exit_code: int | None = None
    signal: str | None = None
    error_snippet: str | None = None
    duration_seconds: float | None = None  # on the end of an attempt
    retry_at: datetime | None = None  # on up_for_retry
    result: Mapping[str, Any] | None = None  # what the ended attempt reported


@dataclass(frozen=True, slots=True)
class DatasetProduced(_Payload):
    """Out (status topic): a task succeeded and wrote a partition of one of its outputs."""

    TYPE: ClassVar[str] = "dataset.produced"
    dataset: str
    partition: str
    version: str  # the run id and attempt that wrote it
    uri: str
    run_id: str
    pipeline_id: str
    task_id: str
    trace_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RunDeadlineMissed(_Payload):
    """Out (status topic): a run had not succeeded by its SLA deadline."""

    TYPE: ClassVar[str] = "run.deadline_missed"
    run_id: str
    pipeline_id: str
    batch_date: date
    state: RunState
    deadline_at: datetime
    trace_id: str
    at: datetime


Payload = (
    DatasetReady
    | RunRequested
    | RunCommand
    | TaskCompleted
    | TaskHeartbeat
    | TaskRequested
    | TaskCancel
    | TaskLog
    | CommandRecorded
    | RunStatus
    | TaskStatus
    | DatasetProduced
    | RunDeadlineMissed
)
PAYLOAD_TYPES: dict[str, type[Payload]] = {
    cls.TYPE: cls
    for cls in (
        DatasetReady,
        RunRequested,
        RunCommand,
        TaskCompleted,
        TaskHeartbeat,
        TaskRequested,
        TaskCancel,
        TaskLog,
        CommandRecorded,
        RunStatus,
        TaskStatus,
        DatasetProduced,
        RunDeadlineMissed,
    )
}

Codec = tuple[str, Callable[[Any], Any], Callable[[Any], Any]]


def _same(value: Any) -> Any:
    return value


def _iso_date(value: date) -> str:
    return value.isoformat()


# What each field type is as JSON: (decode, encode).
_KINDS: dict[Any, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    date: (date.fromisoformat, _iso_date),
    datetime: (parse_timestamp, utc_timestamp),
    TaskState: (TaskState, str),
    RunState: (RunState, str),
    float: (float, _same),
}


_CODECS: dict[type[_Payload], tuple[Codec, ...]] = {}


def _codecs(cls: type[_Payload]) -> tuple[Codec, ...]:
    found = _CODECS.get(cls)
    if found is None:
        found = _CODECS[cls] = _field_codecs(cls)
    return found


def _field_codecs(cls: type[_Payload]) -> tuple[Codec, ...]:
    hints = typing.get_type_hints(cls, vars(sys.modules[__name__]))
    codecs = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind = hints[field.name]
        if isinstance(kind, types.UnionType):  # X | None
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        decode, encode = _KINDS.get(typing.get_origin(kind) or kind, (_same, _same))
        if typing.get_origin(kind) is Mapping:
            decode, encode = dict, dict
        codecs.append((field.name, decode, encode))
    return tuple(codecs)
