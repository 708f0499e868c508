"""What every part of the orchestrator that changes runs shares — the store, the deployed
pipelines, the way events are built, the work hub, the actor's name — and the one shape of
such a change: a transaction, a working set of the runs it touches, everything written in
bulk, then (only once committed) the outcome counted and whoever waits for its work woken."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NamedTuple

from service.orchestrator.outcome import BatchOutcome
from service.orchestrator.outgoing import Outgoing
from service.orchestrator.work_hub import WorkHub
from service.orchestrator.working_set import WorkingSet
from service.pipelines import PipelineRegistry
from service.store import Store


class Writing(NamedTuple):
    store: Store
    registry: PipelineRegistry
    outgoing: Outgoing
    hub: WorkHub
    actor: str  # names this process in the transition log

    @asynccontextmanager
    async def working(self, outcome: BatchOutcome) -> AsyncIterator[WorkingSet]:
        """A transaction and its working set; written and committed when the block ends."""
        async with self.store.transaction(self.actor) as tx:
            ws = WorkingSet(tx, self.registry, self.outgoing, outcome)
            yield ws
            await ws.write()
            outcome.outbox_written = tx.outbox_written
        outcome.observe()
        self.hub.committed(outcome)
