"""Local completions, applied in batches: one transaction for all that arrived together.

The local executor submits each attempt's ``task.completed`` here; it takes the same path as a
completion from Kafka (``orchestrator/batch.py``), and whatever can never apply goes to the
dead-letter topic, named as coming from the completions topic.
"""

from __future__ import annotations

from collections import deque

from service.bus.dead_letter import DeadLetter, DeadLetters
from service.events import CloudEvent, TaskCompleted
from service.orchestrator.batch import BatchApplier
from service.orchestrator.reliable import apply_reliably
from service.supervision import Loop

MAX_BATCH = 500  # completions applied in one transaction at most


class CompletionBatcher(Loop):
    name = "completions"

    def __init__(
        self,
        *,
        applier: BatchApplier,
        dead_letters: DeadLetters,
        topic: str,
        max_batch: int = MAX_BATCH,
    ) -> None:
        super().__init__(idle_wait=None)
        self._applier = applier
        self._dead_letters = dead_letters
        self._topic = topic  # named as their origin in dead letters
        self._max_batch = max_batch
        self._queue: deque[CloudEvent] = deque()

    def submit(self, event: CloudEvent) -> None:
        self._queue.append(event)
        self.wake()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def step(self) -> bool:
        if not self._queue:
            return False
        batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
        refused = await apply_reliably(self._applier, batch)
        await self._dead_letters.send(
            [
                DeadLetter(
                    _run_id(r.event).encode(),
                    r.event.to_bytes(),
                    r.reason,
                    self._topic,
                    traceback=r.traceback,
                )
                for r in refused
            ]
        )
        return bool(self._queue)


def _run_id(event: CloudEvent) -> str:
    return event.payload.run_id if isinstance(event.payload, TaskCompleted) else ""
