"""Claims: queued tasks moved to running under a lease, in one transaction each round.

For this process's executor (:meth:`Claimer.claim`), or for remote workers
(:meth:`Claimer.dispatch_remote`: the rendered ``task.requested`` goes through the outbox in the
claim's transaction). Queue order and what fits the node (cores, memory, slots, pools) are
chosen by the ``claimable_tasks`` statement; each claimed task's move to running is an engine
transition, logged and announced like every other.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.engine.decide import start_attempt
from service.engine.model import TaskSnapshot
from service.engine.states import TaskState
from service.execution.launch import Launch, prepare_launch
from service.orchestrator.journal import record_transitions
from service.orchestrator.outcome import BatchOutcome
from service.orchestrator.outgoing import Outgoing
from service.orchestrator.work_hub import WorkHub
from service.pipelines import PipelineRegistry
from service.spec.params import resolve_params
from service.spec.pipeline import Pipeline
from service.store import Store, Transaction
from service.store.records import ClaimBudget, ClaimedAttempt

# What rendering a launch raises when a value does not fit a template (a date overflowing).
UNRENDERABLE = (ValueError, OverflowError)


@dataclass(frozen=True, slots=True)
class Dispatched:
    """Remote attempts requested, and those whose launch would not render (to fail)."""

    sent: int
    unrenderable: list[tuple[ClaimedAttempt, str]]


def launch_for(pipeline: Pipeline, claim: ClaimedAttempt) -> Launch:
    """The launch of a claimed attempt, with the run's parameters resolved."""
    return prepare_launch(
        pipeline,
        claim.task_id,
        run_id=claim.run_id,
        attempt=claim.attempt,
        batch_date=claim.batch_date,
        trace_id=claim.trace_id,
        params=resolve_params(pipeline.spec.params, claim.params),
    )


class Claimer:
    def __init__(
        self, *, store: Store, registry: PipelineRegistry, outgoing: Outgoing, hub: WorkHub
    ) -> None:
        self._store = store
        self._registry = registry
        self._outgoing = outgoing
        self._hub = hub

    async def claim(
        self, worker_id: str, budget: ClaimBudget, lease_seconds: float
    ) -> list[ClaimedAttempt]:
        """Move the queued local tasks that fit ``budget`` to running for ``worker_id``."""
        async with self._store.transaction(worker_id) as tx:
            claims = await self._claim_in(tx, worker_id, budget, lease_seconds)
            written = tx.outbox_written
        if claims:
            self._hub.committed(BatchOutcome(outbox_written=written))
        return claims

    async def dispatch_remote(
        self, dispatcher_id: str, limit: int, lease_seconds: float
    ) -> Dispatched:
        """Claim up to ``limit`` queued remote tasks and request each from the workers."""
        budget = ClaimBudget(limit, remote=True)
        unrenderable: list[tuple[ClaimedAttempt, str]] = []
        async with self._store.transaction(dispatcher_id) as tx:
            claims = await self._claim_in(tx, dispatcher_id, budget, lease_seconds)
            for claim in claims:
                pipeline = await self._registry.version(claim.pipeline_id, claim.spec_hash)
                try:
                    launch = launch_for(pipeline, claim)
                except UNRENDERABLE as exc:
                    unrenderable.append((claim, f"cannot render the attempt: {exc!r}"))
                    continue
                tx.add_outbox([self._outgoing.task_requested(claim, launch, lease_seconds)])
            written = tx.outbox_written
        if claims:
            self._hub.committed(BatchOutcome(outbox_written=written))
        return Dispatched(len(claims) - len(unrenderable), unrenderable)

    async def _claim_in(
        self, tx: Transaction, worker_id: str, budget: ClaimBudget, lease_seconds: float
    ) -> list[ClaimedAttempt]:
        claims = await tx.claim_tasks(worker_id, budget, lease_seconds)
        for claim in claims:
            pipeline = await self._registry.version(claim.pipeline_id, claim.spec_hash)
            before = TaskSnapshot(claim.task_id, TaskState.QUEUED, claim.attempt - 1)
            record_transitions(tx, self._outgoing, claim.run(), pipeline, [start_attempt(before)])
        return claims
