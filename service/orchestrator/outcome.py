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
    run_endings: dict[str, int] = field(default_factory=dict)  # terminal state -> count
    task_endings: dict[str, int] = field(default_factory=dict)
    scheduling_latencies: list[float] = field(default_factory=list)  # seconds
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
        for state, n in later.run_endings.items():
            self.run_endings[state] = self.run_endings.get(state, 0) + n

    def count(self, transitions: Sequence[Transition]) -> None:
        """Count what the transitions queue, schedule and end."""
        for t in transitions:
            if t.task_id is None:
                if t.to_state in RUN_TERMINAL:
                    self.run_endings[t.to_state] = self.run_endings.get(t.to_state, 0) + 1
                continue
            if t.to_state == TaskState.QUEUED:
                self.tasks_queued += 1
            elif t.retry_at is not None:
                self.retries_scheduled += 1
            elif t.to_state in TASK_TERMINAL:
                self.task_endings[t.to_state] = self.task_endings.get(t.to_state, 0) + 1

    def observe(self) -> None:
        """Count what this batch committed (never before: a rollback changes nothing)."""
        for state, n in self.run_endings.items():
            metrics.RUNS_ENDED.labels(state).inc(n)
        for state, n in self.task_endings.items():
            metrics.TASKS_ENDED.labels(state).inc(n)
        if self.retries_scheduled:
            metrics.RETRIES_SCHEDULED.inc(self.retries_scheduled)
        for seconds in self.scheduling_latencies:
            metrics.SCHEDULING_LATENCY.observe(seconds)
        for run in self.created:
            log.info("run.created", **run)
