"""The remote dispatcher: claims queued tasks that run on remote workers and requests each one
through the outbox (``task.requested``), in the claim's transaction; and requests again, for
the same attempt, what no worker picked up in time."""

from __future__ import annotations

import time

from service.engine.states import TaskState
from service.events import TaskCompleted, new_event
from service.orchestrator.batch import BatchApplier
from service.orchestrator.claims import Claimer
from service.orchestrator.work_hub import Work, WorkHub
from service.supervision import Loop

BATCH = 100  # remote tasks requested per transaction
SOURCE = "urn:tributary:dispatcher"


class RemoteDispatcher(Loop):
    name = "dispatcher"

    def __init__(
        self,
        *,
        claimer: Claimer,
        applier: BatchApplier,
        hub: WorkHub,
        dispatcher_id: str,
        lease_seconds: float,
        pickup_seconds: float,
        poll_interval: float,
    ) -> None:
        super().__init__(idle_wait=poll_interval)
        self._poll_interval = poll_interval
        self._next_redispatch = 0.0  # monotonic time of the next look for unpicked requests
        self._claimer = claimer
        self._applier = applier
        self._id = f"dispatch:{dispatcher_id}"
        self._lease_seconds = lease_seconds
        self._pickup_seconds = pickup_seconds
        self.requested_again = 0
        self.dispatched = 0
        hub.subscribe(Work.TASKS, self.wake)

    async def step(self) -> bool:
        done = await self._claimer.dispatch_remote(
            self._id, BATCH, self._lease_seconds, self._pickup_seconds
        )
        self.dispatched += done.sent
        if (now := time.monotonic()) >= self._next_redispatch:  # every poll, not every wake-up
            self._next_redispatch = now + self._poll_interval
            self.requested_again += await self._claimer.redispatch(
                self._id, BATCH, self._lease_seconds, self._pickup_seconds
            )
        if done.unrenderable:  # it would not render next time either: failed, not retried
            failed = [
                new_event(
                    TaskCompleted(
                        claim.run_id,
                        claim.task_id,
                        claim.attempt,
                        TaskState.FAILED,
                        retryable=False,
                        error_snippet=why[-200:],
                        reason=why,
                    ),
                    SOURCE,
                    event_id=f"unrenderable:{claim.run_id}/{claim.task_id}/{claim.attempt}",
                )
                for claim, why in done.unrenderable
            ]
            await self._applier.apply(failed)
        return done.sent + len(done.unrenderable) == BATCH
