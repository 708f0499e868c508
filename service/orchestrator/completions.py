"""Attempts that ended (``task.completed``, from the local executor, remote workers, external
executors or the lease reaper): the engine decides what follows, this module carries it out."""

from __future__ import annotations

import random
from typing import assert_never

from service.clock import utc_now
from service.engine.decide import decide
from service.engine.model import (
    AnnounceOutputs,
    ArchiveAttempt,
    AttemptFinished,
    Effect,
    RememberCacheKey,
    StopAttempt,
)
from service.engine.states import TaskState
from service.events import CloudEvent, TaskCompleted
from service.orchestrator.outgoing import AttemptDetails
from service.orchestrator.runs import RunStarter
from service.orchestrator.working_set import WorkingSet
from service.store.records import AttemptResult, CacheEntry


class CompletionApplier:
    def __init__(
        self, *, runs: RunStarter, max_lost_attempts: int, rng: random.Random | None = None
    ) -> None:
        self._runs = runs
        self._max_lost = max_lost_attempts  # lost attempts retried apart, per task instance
        self._rng = rng or random.Random()  # the backoff's jitter

    async def apply(self, ws: WorkingSet, event: CloudEvent, completed: TaskCompleted) -> None:
        run_id, task_id = completed.run_id, completed.task_id
        if not ws.is_active(run_id):
            why = "unknown run" if run_id not in ws.runs else f"run is {ws.run_state(run_id)}"
            ws.ignore(event, why, run_id, task_id)
            return
        finished = AttemptFinished(
            task_id,
            completed.attempt,
            completed.outcome,
            exit_code=completed.exit_code,
            retryable=completed.retryable,
            at=utc_now(),
            jitter_sample=self._rng.uniform(-1.0, 1.0),
            reason=completed.reason or "",
            cache_key=completed.cache_key,
            lost=completed.lost,
            lost_budget=self._max_lost,
            result=completed.result,
        )
        decision = decide(ws.pipelines[run_id].graph, ws.snapshot(run_id), finished)
        if decision.ignored:
            ws.ignore(event, decision.ignored, run_id, task_id)
            return
        ws.apply(run_id, decision.transitions, {task_id: _details(completed)})
        ws.record_result(run_id, task_id, completed.result)
        for effect in decision.effects:
            await self._carry_out(ws, run_id, completed, effect)
        ws.outcome.applied += 1
        pipeline_id = ws.runs[run_id].pipeline_id
        if completed.started_at is not None and completed.ended_at is not None:
            took = max((completed.ended_at - completed.started_at).total_seconds(), 0.0)
            ws.outcome.task_durations.append((pipeline_id, task_id, str(completed.outcome), took))
        queued = any(t.to_state == TaskState.QUEUED for t in decision.transitions)
        if queued and completed.ended_at is not None:
            latency = (utc_now() - completed.ended_at).total_seconds()
            ws.outcome.scheduling_latencies.append((pipeline_id, latency))

    async def _carry_out(
        self, ws: WorkingSet, run_id: str, completed: TaskCompleted, effect: Effect
    ) -> None:
        match effect:
            case ArchiveAttempt():
                ws.archive(
                    AttemptResult(
                        run_id,
                        effect.task_id,
                        effect.attempt,
                        completed.exit_code,
                        completed.error_snippet,
                        completed.stderr_tail,
                        completed.ended_at or utc_now(),
                        completed.result,
                        completed.started_at,
                    )
                )
            case AnnounceOutputs():
                await self._runs.announce_outputs(
                    ws, run_id, effect.task_id, effect.attempt, completed
                )
            case RememberCacheKey():
                pipeline_id = ws.runs[run_id].pipeline_id
                ws.remember(
                    CacheEntry(
                        effect.cache_key, pipeline_id, effect.task_id, run_id, effect.attempt
                    )
                )
            case StopAttempt():
                ws.stop_attempt(run_id, effect)
            case _:
                assert_never(effect)


def _details(completed: TaskCompleted) -> AttemptDetails:
    duration = None
    if completed.started_at is not None and completed.ended_at is not None:
        duration = round(max((completed.ended_at - completed.started_at).total_seconds(), 0), 3)
    return AttemptDetails(
        completed.exit_code, completed.signal, completed.error_snippet, duration, completed.result
    )
