"""Timers kept in PostgreSQL, so they fire after a restart and on whichever replica is up.

- retry due: a task up for retry is queued again at its ``retry_at`` (``RetryDue``);
- lease expired: a running attempt whose worker stopped renewing its lease is reported lost,
  a failed retryable completion with an id derived from the attempt, so it applies once;
- SLA deadline: an active run past its deadline is announced once (``run.deadline_missed``).

Every replica runs them; the state guards make each timer fire once.
"""

from __future__ import annotations

from service import metrics
from service.clock import utc_now
from service.engine.decide import decide
from service.engine.model import RetryDue
from service.observability import get_logger
from service.orchestrator.batch import BatchApplier
from service.orchestrator.outcome import BatchOutcome
from service.orchestrator.outgoing import Outgoing, lost_attempt
from service.orchestrator.work_hub import WorkHub
from service.orchestrator.working_set import WorkingSet
from service.pipelines import PipelineRegistry
from service.store import Store

log = get_logger(__name__)


class Timers:
    def __init__(
        self,
        *,
        store: Store,
        registry: PipelineRegistry,
        outgoing: Outgoing,
        applier: BatchApplier,
        hub: WorkHub,
        actor: str,
    ) -> None:
        self._store = store
        self._registry = registry
        self._outgoing = outgoing
        self._applier = applier
        self._hub = hub
        self._actor = actor

    async def fire_due_retries(self, limit: int) -> int:
        """Queue again the tasks whose retry time has come; return how many were due."""
        due = await self._store.due_retries(limit)
        if not due:
            return 0
        outcome = BatchOutcome()
        async with self._store.transaction(self._actor) as tx:
            ws = WorkingSet(tx, self._registry, self._outgoing, outcome)
            await ws.load(retry.run_id for retry in due)
            for retry in due:
                if not ws.is_active(retry.run_id):
                    continue
                graph = ws.pipelines[retry.run_id].graph
                decision = decide(graph, ws.snapshot(retry.run_id), RetryDue(retry.task_id))
                if decision.ignored is None:  # else another replica fired it first
                    ws.apply(retry.run_id, decision.transitions)
            await ws.write()
            outcome.outbox_written = tx.outbox_written
        outcome.observe()
        self._hub.committed(outcome)
        return len(due)

    async def reap_expired_leases(self, limit: int, grace_seconds: float) -> int:
        """Report attempts whose lease expired more than ``grace_seconds`` ago as lost (failed,
        retryable, not counted against the task's retries)."""
        expired = await self._store.expired_leases(limit, grace_seconds)
        if not expired:
            return 0
        metrics.ATTEMPTS_LOST.inc(len(expired))
        for lease in expired:
            log.warning(
                "attempt.lost",
                run_id=lease.run_id,
                task_id=lease.task_id,
                attempt=lease.attempt,
                worker_id=lease.worker_id,
            )
        await self._applier.apply([lost_attempt(lease) for lease in expired])
        return len(expired)

    async def flag_missed_deadlines(self, limit: int) -> int:
        """Announce, once each, the active runs past their SLA deadline."""
        async with self._store.transaction(self._actor) as tx:
            late = await tx.flag_missed_deadlines(limit)
            now = utc_now()
            for run in late:
                log.warning(
                    "run.deadline_missed",
                    run_id=run.run_id,
                    pipeline_id=run.pipeline_id,
                    deadline_at=str(run.deadline_at),
                )
                tx.add_outbox([self._outgoing.deadline_missed(run, now)])
            written = tx.outbox_written
        if late:
            self._hub.committed(BatchOutcome(outbox_written=written))
        return len(late)
