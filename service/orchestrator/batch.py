"""A batch of events in ONE PostgreSQL transaction.

Kafka triggers, Kafka completions and the local executor's completions all arrive here as
parsed events and take the same path: record the event ids (duplicates are no-ops), lock the
runs they touch, have each event decided against the runs as the batch has left them so far,
then write every move, result, log row and status event in bulk, and commit. Only then may the
caller acknowledge the input (commit Kafka offsets).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import assert_never

from service.engine.triggers import ANY_SENSIBLE_DATE, BatchDates
from service.errors import EventError, InfrastructureError
from service.events import (
    CloudEvent,
    CommandRecorded,
    DatasetProduced,
    DatasetReady,
    RunCommand,
    RunDeadlineMissed,
    RunRequested,
    RunStatus,
    TaskCancel,
    TaskCompleted,
    TaskHeartbeat,
    TaskLog,
    TaskRequested,
    TaskStatus,
)
from service.observability import get_logger
from service.orchestrator.admission import Admission
from service.orchestrator.commands import CommandApplier
from service.orchestrator.completions import CompletionApplier
from service.orchestrator.outcome import BatchOutcome
from service.orchestrator.outgoing import Outgoing
from service.orchestrator.runs import RunStarter
from service.orchestrator.working_set import WorkingSet
from service.orchestrator.writing import FollowUp, Writing
from service.store.records import ReceivedEvent

log = get_logger(__name__)

APPLIED_TYPES = (DatasetReady.TYPE, RunRequested.TYPE, TaskCompleted.TYPE, RunCommand.TYPE)
DEFAULT_MAX_LOST_ATTEMPTS = 3
# At most this many events: each statement planned once per connection (generically), as a
# claim's are. A larger batch's are planned for their rows at each call.
SMALL_BATCH = 16


def check_applicable(event: CloudEvent) -> None:
    """Refuse, before any transaction, an event the orchestrator does not apply."""
    if event.type not in APPLIED_TYPES:
        raise EventError(f"event type {event.type!r} is not applied by the orchestrator")


class BatchApplier:
    def __init__(
        self,
        writing: Writing,
        *,
        remote_by_default: bool = False,
        max_lost_attempts: int = DEFAULT_MAX_LOST_ATTEMPTS,
        dates: BatchDates = ANY_SENSIBLE_DATE,
        default_timeout: timedelta | None = None,
    ) -> None:
        self._writing = writing
        self.runs = RunStarter(
            registry=writing.registry,
            outgoing=writing.outgoing,
            remote_by_default=remote_by_default,
            dates=dates,
            default_timeout=default_timeout,
        )
        self.admission = Admission(writing)
        self._completions = CompletionApplier(runs=self.runs, max_lost_attempts=max_lost_attempts)
        self._commands = CommandApplier(writing.outgoing, writing.registry)

    @property
    def outgoing(self) -> Outgoing:
        return self._writing.outgoing

    async def apply(
        self, events: Sequence[CloudEvent], follow_up: FollowUp | None = None
    ) -> BatchOutcome:
        """Apply a batch in one transaction (events must have passed :func:`check_applicable`),
        with ``follow_up`` done in it before the commit."""
        outcome = BatchOutcome()
        unique = list({(e.source, e.id): e for e in reversed(events)}.values())[::-1]
        outcome.duplicates = len(events) - len(unique)
        async with self._writing.working(outcome, follow_up) as ws:
            if follow_up is not None and len(unique) <= SMALL_BATCH:
                await ws.tx.plan_generically()  # a hop: its follow-up claims with it anyway
            # The runs of the completions are locked in the same statement (duplicates' too).
            fresh, locked = await ws.tx.mark_events_and_lock_runs(
                [ReceivedEvent(e.source, e.id, e.type) for e in unique],
                [e.payload.run_id for e in unique if isinstance(e.payload, TaskCompleted)],
            )
            todo = [e for e in unique if (e.source, e.id) in fresh]
            outcome.duplicates += len(unique) - len(todo)
            await ws.take(locked)
            for event in todo:
                await self._apply_one(ws, event)
        await self._admit(outcome)
        return outcome

    async def _admit(self, outcome: BatchOutcome) -> None:
        """Start the queued runs the batch made room for. The batch is committed whatever
        happens here: a failure is left to the admission sweep."""
        if not outcome.to_admit:
            return
        try:
            outcome.absorb(await self.admission.admit(outcome.to_admit))
        except InfrastructureError as exc:
            log.warning("admission.deferred", pipelines=sorted(outcome.to_admit), error=repr(exc))

    async def _apply_one(self, ws: WorkingSet, event: CloudEvent) -> None:
        match event.payload:
            case DatasetReady() as ready:
                await self.runs.dataset_ready(ws, event, ready)
            case RunRequested() as request:
                await self.runs.run_requested(ws, event, request)
            case TaskCompleted() as completed:
                await self._completions.apply(ws, event, completed)
            case RunCommand() as command:
                await self._commands.apply(ws, event, command)
            case (
                TaskHeartbeat()
                | TaskRequested()
                | TaskCancel()
                | TaskLog()
                | CommandRecorded()
                | RunStatus()
                | TaskStatus()
                | DatasetProduced()
                | RunDeadlineMissed()
            ):
                raise EventError(f"event type {event.type!r} is not applied by the orchestrator")
            case _:
                assert_never(event.payload)
