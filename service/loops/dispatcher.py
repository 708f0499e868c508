"""The remote dispatcher: claims queued tasks that run on remote workers and requests each one
through the outbox (``task.requested``), in the claim's transaction."""

from __future__ import annotations

from service.orchestrator.claims import Claimer
from service.orchestrator.work_hub import Work, WorkHub
from service.supervision import Loop

BATCH = 100  # remote tasks requested per transaction


class RemoteDispatcher(Loop):
    name = "dispatcher"

    def __init__(
        self,
        *,
        claimer: Claimer,
        hub: WorkHub,
        dispatcher_id: str,
        lease_seconds: float,
        poll_interval: float,
    ) -> None:
        super().__init__(idle_wait=poll_interval)
        self._claimer = claimer
        self._id = f"dispatch:{dispatcher_id}"
        self._lease_seconds = lease_seconds
        self.dispatched = 0
        hub.subscribe(Work.TASKS, self.wake)

    async def step(self) -> bool:
        sent = await self._claimer.dispatch_remote(self._id, BATCH, self._lease_seconds)
        self.dispatched += sent
        return sent == BATCH
