"""What every part of the orchestrator that changes runs shares — the store, the deployed
pipelines, the way events are built, the work hub, the actor's name — and the one shape of
such a change: a transaction, a working set of the runs it touches, everything written in
bulk, then (only once committed) the outcome counted and whoever waits for its work woken."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NamedTuple, Protocol

from service.orchestrator.outcome import BatchOutcome
from service.orchestrator.outgoing import Outgoing
from service.orchestrator.work_hub import WorkHub
from service.orchestrator.working_set import WorkingSet
from service.pipelines import PipelineRegistry
from service.store import Store, Transaction


class FollowUp(Protocol):
    """More work in a change's transaction, after its moves are written: the executor claiming
    the successors a batch of its completions queued (one transaction per hop)."""

    async def within(self, tx: Transaction, outcome: BatchOutcome) -> None: ...

    def committed(self) -> None: ...

    def abandoned(self) -> None:
        """The transaction failed: what ``within`` did may or may not have committed."""


class Writing(NamedTuple):
    store: Store
    registry: PipelineRegistry
    outgoing: Outgoing
    hub: WorkHub
    actor: str  # names this process in the transition log

    @asynccontextmanager
    async def working(
        self, outcome: BatchOutcome, follow_up: FollowUp | None = None
    ) -> AsyncIterator[WorkingSet]:
        """A transaction and its working set; written (then ``follow_up`` done in it) and
        committed when the block ends."""
        try:
            async with self.store.transaction(self.actor) as tx:
                ws = WorkingSet(tx, self.registry, self.outgoing, outcome)
                yield ws
                await ws.write()
                if follow_up is not None:
                    await follow_up.within(tx, outcome)
                outcome.outbox_written = tx.outbox_written
        except BaseException:
            if follow_up is not None:
                follow_up.abandoned()
            raise
        if follow_up is not None:
            follow_up.committed()
        outcome.observe()
        self.hub.committed(outcome)
