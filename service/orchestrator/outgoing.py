"""Every event Tributary publishes, built in one place, as the outbox rows that carry it.

Status events (``run.status``, ``task.status``), ``dataset.produced`` and
``run.deadline_missed`` go to the status topic keyed by run id (one partition per run keeps its
events in order); ``task.requested`` goes to the requests topic for remote workers. The lost
attempt a lease reaper reports is built here too: its id is derived from the attempt, so every
replica that notices builds the same event and it applies once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.config.kafka import requests_topic
from service.engine.model import Transition
from service.engine.states import RunState, TaskState
from service.events import (
    CloudEvent,
    CommandRecorded,
    DatasetProduced,
    RunDeadlineMissed,
    RunStatus,
    TaskCancel,
    TaskCompleted,
    TaskRequested,
    TaskStatus,
    new_event,
)
from service.execution.launch import Launch
from service.spec.pipeline import Pipeline
from service.store.records import (
    AuditEntry,
    ClaimedAttempt,
    ExpiredLease,
    LockedRun,
    MissedDeadline,
    OutboxRow,
)

LEASE_REAPER_SOURCE = "urn:tributary:lease-reaper"


@dataclass(frozen=True, slots=True)
class AttemptDetails:
    """How an attempt ended, for the status event of the task's move."""

    exit_code: int | None = None
    signal: str | None = None
    error_snippet: str | None = None
    duration_seconds: float | None = None
    result: Mapping[str, Any] | None = None  # what the task reported


@dataclass(frozen=True, slots=True)
class Outgoing:
    status_topic: str
    requests_topic: str
    source: str  # the CloudEvents source of what Tributary publishes
    cancels_topic: str = ""  # task.cancel, to every remote worker ("": none sent)

    def status(
        self,
        run: LockedRun,
        pipeline: Pipeline,
        t: Transition,
        at: datetime,
        details: AttemptDetails | None = None,
    ) -> OutboxRow:
        """The run.status or task.status of one transition."""
        if t.task_id is None:
            payload: RunStatus | TaskStatus = RunStatus(
                run_id=run.run_id,
                pipeline_id=run.pipeline_id,
                batch_date=run.batch_date,
                state=RunState(t.to_state),
                previous_state=RunState(t.from_state) if t.from_state else None,
                reason=t.reason,
                trace_id=run.trace_id,
                at=at,
                spec_hash=run.spec_hash,
            )
            return self._row(new_event(payload, self.source, run.run_id, run.trace_id), run)
        details = details or AttemptDetails()
        payload = TaskStatus(
            run_id=run.run_id,
            pipeline_id=run.pipeline_id,
            task_id=t.task_id,
            attempt=t.attempt or 0,
            batch_date=run.batch_date,
            state=TaskState(t.to_state),
            previous_state=TaskState(t.from_state) if t.from_state else None,
            reason=t.reason,
            trace_id=run.trace_id,
            at=at,
            spec_hash=run.spec_hash,
            max_attempts=pipeline.graph.retries[t.task_id].max_attempts,
            exit_code=details.exit_code,
            signal=details.signal,
            error_snippet=details.error_snippet,
            duration_seconds=details.duration_seconds,
            retry_at=t.retry_at,
            result=details.result,
        )
        subject = f"{run.run_id}/{t.task_id}"
        return self._row(new_event(payload, self.source, subject, run.trace_id), run)

    def dataset_produced(self, run: LockedRun, produced: DatasetProduced) -> OutboxRow:
        return self._row(new_event(produced, self.source, produced.dataset, run.trace_id), run)

    def task_requested(
        self, claim: ClaimedAttempt, launch: Launch, lease_seconds: float, queue: str | None
    ) -> OutboxRow:
        """For the workers of the task's queue (those without one: the requests topic)."""
        request = TaskRequested(
            run_id=claim.run_id,
            task_id=claim.task_id,
            attempt=claim.attempt,
            pipeline_id=claim.pipeline_id,
            batch_date=claim.batch_date,
            trace_id=claim.trace_id,
            lease_seconds=lease_seconds,
            launch=launch.to_json(),
            pickup_by=claim.pickup_by,
            cpu_cores=claim.cpu_cores,
            memory_mb=claim.memory_mb,
        )
        subject = f"{claim.run_id}/{claim.task_id}"
        event = new_event(request, self.source, subject, claim.trace_id)
        topic = requests_topic(self.requests_topic, queue)
        return OutboxRow(event.id, topic, claim.run_id, event.to_bytes())

    def task_cancel(self, run: LockedRun, task_id: str, attempt: int, why: str) -> list[OutboxRow]:
        """A cancelled attempt, for whichever remote worker runs it (none, if no topic)."""
        if not self.cancels_topic:
            return []
        cancel = TaskCancel(run.run_id, task_id, attempt, why)
        event = new_event(cancel, self.source, f"{run.run_id}/{task_id}", run.trace_id)
        return [OutboxRow(event.id, self.cancels_topic, run.run_id, event.to_bytes())]

    def command_recorded(self, entry: AuditEntry, at: datetime) -> OutboxRow:
        """The audit trail's entry for a command, on the status topic."""
        recorded = CommandRecorded(
            command_id=entry.event_id,
            actor=entry.actor,
            command=entry.command,
            outcome=entry.outcome,
            at=at,
            detail=entry.detail or None,
            reason=entry.reason or None,
            run_id=entry.run_id,
            task_id=entry.task_id,
            pipeline_id=entry.pipeline_id,
        )
        key = entry.run_id or entry.pipeline_id or entry.actor
        event = new_event(recorded, self.source, key, event_id=f"recorded:{entry.event_id}")
        return OutboxRow(event.id, self.status_topic, key, event.to_bytes())

    def deadline_missed(self, late: MissedDeadline, at: datetime) -> OutboxRow:
        payload = RunDeadlineMissed(
            run_id=late.run_id,
            pipeline_id=late.pipeline_id,
            batch_date=late.batch_date,
            state=late.state,
            deadline_at=late.deadline_at,
            trace_id=late.trace_id,
            at=at,
        )
        event = new_event(payload, self.source, late.run_id, late.trace_id)
        return OutboxRow(event.id, self.status_topic, late.run_id, event.to_bytes())

    def _row(self, event: CloudEvent, run: LockedRun) -> OutboxRow:
        return OutboxRow(event.id, self.status_topic, run.run_id, event.to_bytes())


def lost_attempt(lease: ExpiredLease) -> CloudEvent:
    """A failed, retryable completion for an attempt whose worker stopped renewing its lease;
    timed out (not lost: it counts against the task's retries) when its lease ran out at the
    attempt's deadline, as its holder failed to stop it in time."""
    if lease.past_deadline:
        outcome, lost = TaskState.TIMED_OUT, False
        reason = f"attempt overstayed its deadline: worker {lease.worker_id} did not end it"
    else:
        outcome, lost = TaskState.FAILED, True
        reason = f"attempt lost: worker {lease.worker_id} stopped renewing its lease"
    return new_event(
        TaskCompleted(
            run_id=lease.run_id,
            task_id=lease.task_id,
            attempt=lease.attempt,
            outcome=outcome,
            retryable=True,
            error_snippet=reason,
            reason=reason,
            lost=lost,
        ),
        LEASE_REAPER_SOURCE,
        event_id=f"lost:{lease.run_id}:{lease.task_id}:{lease.attempt}",
    )
