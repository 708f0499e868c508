"""The runs one transaction changes: their locked rows and pipeline versions, their task states
as the batch has left them so far, and what to write in bulk before the commit.

Events of a batch are decided one after the other against this view, so a completion and the
retry or successor it causes see each other. Each task row gets one net move (from its state
at the start of the batch to its state at the end), each guarded in SQL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from service.clock import utc_now
from service.engine.model import RunSnapshot, StopAttempt, TaskSnapshot, Transition
from service.engine.states import RUN_TERMINAL, RunState, TaskState
from service.engine.triggers import RunToStart
from service.events import CloudEvent
from service.observability import get_logger
from service.orchestrator.journal import record_transitions
from service.orchestrator.outcome import BatchOutcome
from service.orchestrator.outgoing import AttemptDetails, Outgoing
from service.pipelines import PipelineRegistry
from service.spec.pipeline import Pipeline
from service.store import Transaction
from service.store.records import (
    AttemptResult,
    CacheEntry,
    IgnoredEvent,
    LockedRun,
    RunMove,
    TaskMove,
)

log = get_logger(__name__)


class WorkingSet:
    def __init__(
        self,
        tx: Transaction,
        registry: PipelineRegistry,
        outgoing: Outgoing,
        outcome: BatchOutcome,
    ) -> None:
        self.tx = tx
        self.outcome = outcome
        self._registry = registry
        self._outgoing = outgoing
        self.runs: dict[str, LockedRun] = {}
        self.pipelines: dict[str, Pipeline] = {}  # run id -> the version it follows
        self._run_states: dict[str, RunState] = {}
        self._tasks: dict[str, dict[str, TaskSnapshot]] = {}
        self._task_moves: dict[tuple[str, str], TaskMove] = {}
        self._run_moves: dict[str, RunMove] = {}
        self._results: list[AttemptResult] = []
        self._cache_entries: list[CacheEntry] = []
        # Runs to create, by (pipeline, trigger key): with their start and trace id.
        self.planned_runs: dict[tuple[str, str], tuple[RunToStart, str]] = {}
        self._before_write: list[Callable[[WorkingSet], Awaitable[object]]] = []

    async def load(self, run_ids: Iterable[str]) -> None:
        """Lock the runs (in run-id order) and load their tasks and pipeline versions."""
        wanted = sorted(set(run_ids) - set(self.runs))
        if not wanted:
            return
        await self.take(await self.tx.lock_runs(wanted))

    async def take(self, locked: Mapping[str, LockedRun]) -> None:
        """Runs this transaction has just locked: their tasks and pipeline versions loaded."""
        locked = {run_id: run for run_id, run in locked.items() if run_id not in self.runs}
        if not locked:
            return
        states = await self.tx.task_states(list(locked))
        for run_id, run in locked.items():
            self.runs[run_id] = run
            self.pipelines[run_id] = await self._registry.version(run.pipeline_id, run.spec_hash)
            self._run_states[run_id] = run.state
            self._tasks[run_id] = states[run_id]

    def add_new_run(self, run: LockedRun, pipeline: Pipeline) -> None:
        self.runs[run.run_id] = run
        self.pipelines[run.run_id] = pipeline
        self._run_states[run.run_id] = run.state
        self._tasks[run.run_id] = {
            task_id: TaskSnapshot(task_id, TaskState.PENDING, 0) for task_id in pipeline.graph.order
        }

    def is_active(self, run_id: str) -> bool:
        return run_id in self.runs and self._run_states[run_id] not in RUN_TERMINAL

    def run_state(self, run_id: str) -> RunState:
        return self._run_states[run_id]

    def snapshot(self, run_id: str) -> RunSnapshot:
        return RunSnapshot(run_id, self._run_states[run_id], self._tasks[run_id])

    def apply(
        self,
        run_id: str,
        transitions: Sequence[Transition],
        details: Mapping[str, AttemptDetails] | None = None,
    ) -> None:
        """Take the transitions into the batch's view (one net move per row), log them,
        queue their status events and count them."""
        for t in transitions:
            if t.task_id is None:
                earlier = self._run_moves.get(run_id)
                start = earlier.from_state if earlier else t.from_state
                self._run_moves[run_id] = RunMove(run_id, start, t.to_state)
                self._run_states[run_id] = RunState(t.to_state)
                if self._run_states[run_id] in RUN_TERMINAL:
                    self._run_ended(self.runs[run_id], t.to_state)
                continue
            key = (run_id, t.task_id)
            moved = self._task_moves.get(key)
            start = moved.from_state if moved else t.from_state
            lost = t.lost or (moved is not None and moved.lost)
            reset = t.reset or (moved is not None and moved.reset)
            self._task_moves[key] = TaskMove(
                run_id, t.task_id, start, t.to_state, t.retry_at, lost, reset
            )
            task = self._tasks[run_id][t.task_id]
            self._tasks[run_id][t.task_id] = (
                TaskSnapshot(
                    t.task_id, TaskState(t.to_state), task.attempt, 0, task.attempt, task.result
                )
                if t.reset
                else TaskSnapshot(
                    t.task_id,
                    TaskState(t.to_state),
                    task.attempt,
                    task.lost + int(t.lost),
                    task.base,
                    task.result,
                )
            )
        run = self.runs[run_id]
        pipeline = self.pipelines[run_id]
        record_transitions(self.tx, self._outgoing, run, pipeline, transitions, details)
        self.outcome.count(run.pipeline_id, transitions)

    def _run_ended(self, run: LockedRun, state: str) -> None:
        self.outcome.to_admit.add(run.pipeline_id)
        if run.started_at is not None:
            took = (utc_now() - run.started_at).total_seconds()
            self.outcome.run_durations.append((run.pipeline_id, state, max(took, 0.0)))

    def record_result(self, run_id: str, task_id: str, result: Mapping[str, Any] | None) -> None:
        """What the task's ended attempt reported, for decisions later in this batch."""
        task = self._tasks[run_id][task_id]
        self._tasks[run_id][task_id] = dataclasses.replace(task, result=result)

    def created(self, run_id: str, reason: str) -> None:
        """Log the creation of a new run (its row is inserted queued, not moved there)."""
        run = self.runs[run_id]
        creation = Transition(None, "", RunState.QUEUED, None, reason)
        record_transitions(self.tx, self._outgoing, run, self.pipelines[run_id], [creation])
        self.outcome.runs_created += 1
        self.outcome.to_admit.add(run.pipeline_id)

    def stop_attempt(self, run_id: str, stop: StopAttempt) -> None:
        """A cancelled attempt: its holder stops it (and rolls it back) once this commits."""
        log.info(
            "attempt.stop_requested", run_id=run_id, task_id=stop.task_id, attempt=stop.attempt
        )
        why = "cancelled by an operator"
        self.tx.add_outbox(
            self._outgoing.task_cancel(self.runs[run_id], stop.task_id, stop.attempt, why)
        )
        self.outcome.attempts_stopped += 1

    def archive(self, result: AttemptResult) -> None:
        self._results.append(result)

    def remember(self, entry: CacheEntry) -> None:
        self._cache_entries.append(entry)

    def ignore(
        self, event: CloudEvent, why: str, run_id: str | None = None, task_id: str | None = None
    ) -> None:
        """A valid event that changes nothing: kept, with the reason, in ``ignored_events``."""
        log.warning(
            "event.ignored",
            event_id=event.id,
            event_type=event.type,
            reason=why,
            run_id=run_id,
            task_id=task_id,
        )
        self.tx.add_ignored(IgnoredEvent(event.source, event.id, event.type, run_id, task_id, why))
        self.outcome.ignored += 1
        self.outcome.refused[event.id] = why

    def before_write(self, step: Callable[[WorkingSet], Awaitable[object]]) -> None:
        """Have ``step`` done first when the working set is written (creating planned runs)."""
        if step not in self._before_write:
            self._before_write.append(step)

    async def write(self) -> None:
        for step in self._before_write:
            await step(self)
        await self.tx.write_partitions()  # before claims read which data is there
        await self.tx.write_task_changes(list(self._task_moves.values()), self._results)
        await self.tx.move_runs(list(self._run_moves.values()))
        await self.tx.record_cache_keys(self._cache_entries)
