"""Claims: queued tasks moved to running under a lease, in one transaction each round.

For this process's executor (:meth:`Claimer.claim`), or for remote workers
(:meth:`Claimer.dispatch_remote`: the rendered ``task.requested`` goes through the outbox in the
claim's transaction). Queue order and what fits the node (cores, memory, slots, pools) are
chosen by the ``claim_queued`` statement; each claimed task's move to running is an engine
transition, logged and announced like every other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from service import metrics
from service.engine.decide import start_attempt
from service.engine.model import TaskSnapshot
from service.engine.states import TaskState
from service.execution.launch import Launch, prepare_launch
from service.observability import get_logger
from service.orchestrator.journal import record_transitions
from service.orchestrator.outcome import BatchOutcome
from service.orchestrator.outgoing import Outgoing
from service.orchestrator.work_hub import WorkHub
from service.pipelines import PipelineRegistry
from service.spec.params import resolve_params
from service.spec.pipeline import Pipeline
from service.store import Store, Transaction
from service.store.records import ClaimBudget, ClaimedAttempt

log = get_logger(__name__)

# What rendering a launch raises when a value does not fit a template (a date overflowing).
UNRENDERABLE = (ValueError, OverflowError)


@dataclass(frozen=True, slots=True)
class Dispatched:
    """Remote attempts requested, and those whose launch would not render (to fail)."""

    sent: int
    unrenderable: list[tuple[ClaimedAttempt, str]]


def launch_for(
    pipeline: Pipeline, claim: ClaimedAttempt, run_dir_root: Path | None = None
) -> Launch:
    """The launch of a claimed attempt, with the run's parameters resolved, what its tasks
    reported, its run's directory, and the time limit its task instance was created with (its
    own timeout or the default_task_timeout)."""
    launch = prepare_launch(
        pipeline,
        claim.task_id,
        run_id=claim.run_id,
        attempt=claim.attempt,
        batch_date=claim.batch_date,
        trace_id=claim.trace_id,
        params=resolve_params(pipeline.spec.params, claim.params),
        results=claim.results,
        run_dir=None
        if run_dir_root is None
        else str(run_dir_root / claim.pipeline_id / claim.run_id),
    )
    if claim.time_limit_seconds is None:
        return launch  # created before time limits were stored: the spec's own
    return dataclasses.replace(launch, time_limit=claim.time_limit_seconds)


class Claimer:
    def __init__(
        self,
        *,
        store: Store,
        registry: PipelineRegistry,
        outgoing: Outgoing,
        hub: WorkHub,
        run_dir_root: Path | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._outgoing = outgoing
        self._hub = hub
        self._run_dir_root = run_dir_root

    def launch(self, pipeline: Pipeline, claim: ClaimedAttempt) -> Launch:
        return launch_for(pipeline, claim, self._run_dir_root)

    async def claim(
        self, worker_id: str, budget: ClaimBudget, lease_seconds: float
    ) -> list[ClaimedAttempt]:
        """Move the queued local tasks that fit ``budget`` to running for ``worker_id``."""
        async with self._store.transaction(worker_id) as tx:
            claims = await self._claim_in(tx, worker_id, budget, lease_seconds)
            written = tx.outbox_written
        if claims:
            self._hub.committed(BatchOutcome(outbox_written=written))
            self.claimed(claims)
        return claims

    def claimed(self, claims: list[ClaimedAttempt]) -> None:
        """Claims committed (their transaction's outbox wake-up is its own)."""
        observe_queue_waits(claims)

    async def claim_within(
        self, tx: Transaction, worker_id: str, budget: ClaimBudget, lease_seconds: float
    ) -> list[ClaimedAttempt]:
        """Claim in a transaction that holds runs already (a batch of completions: the
        successors they queued start without a transaction of their own); tasks of runs
        another transaction holds are passed over, never waited for."""
        return await self._claim_in(tx, worker_id, budget, lease_seconds, wait_for_runs=False)

    async def dispatch_remote(
        self, dispatcher_id: str, limit: int, lease_seconds: float, pickup_seconds: float
    ) -> Dispatched:
        """Claim up to ``limit`` queued remote tasks and request each from the workers; a
        worker must pick each up within ``pickup_seconds`` (its lease starts then)."""
        if not await self._store.remote_tasks_queued():  # one read, not a claim's round
            return Dispatched(0, [])
        budget = ClaimBudget(limit, remote=True)
        async with self._store.transaction(dispatcher_id) as tx:
            claims = await self._claim_in(tx, dispatcher_id, budget, lease_seconds, pickup_seconds)
            unrenderable = await self._request(tx, claims, lease_seconds)
            written = tx.outbox_written
        if claims:
            self._hub.committed(BatchOutcome(outbox_written=written))
            observe_queue_waits(claims)
        return Dispatched(len(claims) - len(unrenderable), unrenderable)

    async def redispatch(
        self, dispatcher_id: str, limit: int, lease_seconds: float, pickup_seconds: float
    ) -> int:
        """Request again the remote attempts no worker picked up in time (plus a lease of
        margin for a first heartbeat on its way): the same attempt, a new pickup time."""
        async with self._store.transaction(dispatcher_id) as tx:
            unpicked = await tx.unpicked_requests(limit, lease_seconds)
            if not unpicked:
                return 0
            await tx.lock_runs([a.run_id for a in unpicked])
            pickup = await tx.extend_pickup(unpicked, pickup_seconds)
            again = [
                dataclasses.replace(a, pickup_by=pickup[(a.run_id, a.task_id)])
                for a in unpicked
                if (a.run_id, a.task_id) in pickup
            ]
            await self._request(tx, again, lease_seconds)
            written = tx.outbox_written
        log.warning("dispatch.requested_again", attempts=len(again))
        self._hub.committed(BatchOutcome(outbox_written=written))
        return len(again)

    async def _request(
        self, tx: Transaction, claims: list[ClaimedAttempt], lease_seconds: float
    ) -> list[tuple[ClaimedAttempt, str]]:
        """A task.requested for each claim, through the outbox; those whose launch will not
        render come back."""
        unrenderable: list[tuple[ClaimedAttempt, str]] = []
        for claim in claims:
            pipeline = await self._registry.version(claim.pipeline_id, claim.spec_hash)
            try:
                launch = self.launch(pipeline, claim)
            except UNRENDERABLE as exc:
                unrenderable.append((claim, f"cannot render the attempt: {exc!r}"))
                continue
            queue = pipeline.tasks[claim.task_id].queue
            tx.add_outbox([self._outgoing.task_requested(claim, launch, lease_seconds, queue)])
        return unrenderable

    async def _claim_in(
        self,
        tx: Transaction,
        worker_id: str,
        budget: ClaimBudget,
        lease_seconds: float,
        pickup_seconds: float | None = None,
        *,
        wait_for_runs: bool = True,
    ) -> list[ClaimedAttempt]:
        claims = await tx.claim_tasks(
            worker_id, budget, lease_seconds, pickup_seconds, wait_for_runs=wait_for_runs
        )
        for claim in claims:
            pipeline = await self._registry.version(claim.pipeline_id, claim.spec_hash)
            before = TaskSnapshot(claim.task_id, TaskState.QUEUED, claim.attempt - 1)
            record_transitions(tx, self._outgoing, claim.run(), pipeline, [start_attempt(before)])
        return claims


def observe_queue_waits(claims: list[ClaimedAttempt]) -> None:
    """Each committed claim's wait in the queue, by pipeline and task."""
    for claim in claims:
        if claim.queued_at is not None:
            wait = max((claim.started_at - claim.queued_at).total_seconds(), 0.0)
            metrics.QUEUE_WAIT.labels(claim.pipeline_id, claim.task_id).observe(wait)
