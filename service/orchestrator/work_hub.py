"""Who to wake once a commit has made work available: loops subscribe, commits notify.

Claimers (the local executor, the remote dispatcher) wait for queued tasks and arrived data;
the relay for outbox rows; the timer loop for newly scheduled retries. A wake-up only cuts a
wait short: every loop also polls, for work another replica committed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from enum import StrEnum

from service.orchestrator.outcome import BatchOutcome


class Work(StrEnum):
    TASKS = "tasks"  # tasks queued, or data arrived that queued tasks wait for
    OUTBOX = "outbox"  # events written to the outbox
    RETRIES = "retries"  # a retry scheduled: the next one may be due sooner
    STOPS = "stops"  # attempts cancelled while running: their holders should stop them now


class WorkHub:
    def __init__(self) -> None:
        self._listeners: dict[Work, list[Callable[[], None]]] = defaultdict(list)

    def subscribe(self, work: Work, wake: Callable[[], None]) -> None:
        self._listeners[work].append(wake)

    def notify(self, work: Work) -> None:
        for wake in self._listeners[work]:
            wake()

    def committed(self, outcome: BatchOutcome) -> None:
        # A run created queues nothing: its admission (a commit of its own) queues its tasks.
        if outcome.tasks_queued or outcome.datasets_recorded:
            self.notify(Work.TASKS)
        if outcome.outbox_written:
            self.notify(Work.OUTBOX)
        if outcome.retries_scheduled:
            self.notify(Work.RETRIES)
        if outcome.attempts_stopped:
            self.notify(Work.STOPS)
