"""What one transaction did: for wake-ups, metrics, logs and tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from service import metrics
from service.engine.model import Transition
from service.engine.states import RUN_TERMINAL, TASK_TERMINAL, TaskState
from service.observability import get_logger

log = get_logger(__name__)


@dataclass(slots=True)
class BatchOutcome:
    applied: int = 0
    duplicates: int = 0
    ignored: int = 0
    runs_created: int = 0
    tasks_queued: int = 0
    retries_scheduled: int = 0
    datasets_recorded: int = 0  # may unblock tasks waiting for data
    outbox_written: int = 0
    # (pipeline, terminal state) -> count
    run_endings: dict[tuple[str, str], int] = field(default_factory=dict)
    task_endings: dict[tuple[str, str], int] = field(default_factory=dict)
    retries_by_pipeline: dict[str, int] = field(default_factory=dict)
    scheduling_latencies: list[tuple[str, float]] = field(default_factory=list)  # seconds
    run_durations: list[tuple[str, str, float]] = field(default_factory=list)  # pipeline, state
    task_durations: list[tuple[str, str, str, float]] = field(default_factory=list)
    created: list[dict[str, str]] = field(default_factory=list)  # what run.created logs
    # Pipelines whose runs were created or ended: queued runs of theirs may start now.
    to_admit: set[str] = field(default_factory=set)
    attempts_stopped: int = 0  # cancelled while running: their holders stop them
    refused: dict[str, str] = field(default_factory=dict)  # event id -> why it changed nothing

    def absorb(self, later: BatchOutcome) -> None:
        """Add what a follow-up transaction (admission) did, for the caller's view; each was
        observed (metrics, logs) on its own commit."""
        self.tasks_queued += later.tasks_queued
        self.outbox_written += later.outbox_written
        for key, n in later.run_endings.items():
            self.run_endings[key] = self.run_endings.get(key, 0) + n

    def count(self, pipeline_id: str, transitions: Sequence[Transition]) -> None:
        """Count what the transitions of one of the pipeline's runs queue, schedule and end."""
        for t in transitions:
            key = (pipeline_id, t.to_state)
            if t.task_id is None:
                if t.to_state in RUN_TERMINAL:
                    self.run_endings[key] = self.run_endings.get(key, 0) + 1
                continue
            if t.to_state == TaskState.QUEUED:
                self.tasks_queued += 1
            elif t.retry_at is not None:
                self.retries_scheduled += 1
                self.retries_by_pipeline[pipeline_id] = (
                    self.retries_by_pipeline.get(pipeline_id, 0) + 1
                )
            elif t.to_state in TASK_TERMINAL:
                self.task_endings[key] = self.task_endings.get(key, 0) + 1

    def observe(self) -> None:
        """Count what this batch committed (never before: a rollback changes nothing)."""
        for (pipeline, state), n in self.run_endings.items():
            metrics.RUNS_ENDED.labels(pipeline, state).inc(n)
        for pipeline, state, seconds in self.run_durations:
            metrics.RUN_DURATION.labels(pipeline, state).observe(seconds)
        for (pipeline, state), n in self.task_endings.items():
            metrics.TASKS_ENDED.labels(pipeline, state).inc(n)
        for pipeline, task, outcome, seconds in self.task_durations:
            metrics.TASK_DURATION.labels(pipeline, task, outcome).observe(seconds)
        for pipeline, n in self.retries_by_pipeline.items():
            metrics.RETRIES_SCHEDULED.labels(pipeline).inc(n)
        for pipeline, seconds in self.scheduling_latencies:
            metrics.SCHEDULING_LATENCY.labels(pipeline).observe(seconds)
        for run in self.created:
            log.info("run.created", **run)
