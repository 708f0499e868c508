"""Local completions, applied in batches: one transaction for all that arrived together.

The local executor submits each attempt's ``task.completed`` here; it takes the same path as a
completion from Kafka (``orchestrator/batch.py``), and whatever can never apply goes to the
dead-letter topic, named as coming from the completions topic.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

from service.bus.dead_letter import DeadLetter, DeadLetters
from service.errors import TributaryError
from service.events import CloudEvent, TaskCompleted
from service.observability import get_logger
from service.orchestrator.batch import BatchApplier
from service.orchestrator.reliable import apply_reliably
from service.orchestrator.writing import FollowUp
from service.supervision import Loop

log = get_logger(__name__)

MAX_BATCH = 500  # completions applied in one transaction at most
After = Callable[[], Awaitable[None]]


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
        self._queue: deque[tuple[CloudEvent, After | None]] = deque()
        # Done in each batch's transaction: the executor claiming the room its attempts left.
        self.follow_up: FollowUp | None = None

    def submit(self, event: CloudEvent, after: After | None = None) -> None:
        """Apply ``event`` soon; then call ``after`` (the completion is durable by then)."""
        self._queue.append((event, after))
        self.wake()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def step(self) -> bool:
        if not self._queue:
            return False
        taken = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
        batch = [event for event, _ in taken]
        refused = await apply_reliably(self._applier, batch, follow_up=self.follow_up)
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
        for _, after in taken:
            if after is not None:
                try:
                    await after()
                except TributaryError as exc:  # best effort: a leftover is reported again
                    log.warning("completion.after_failed", error=str(exc))
        return bool(self._queue)


def _run_id(event: CloudEvent) -> str:
    return event.payload.run_id if isinstance(event.payload, TaskCompleted) else ""
