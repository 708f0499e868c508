"""Timers kept in PostgreSQL, so they fire after a restart and on whichever replica is up.

- retry due: a task up for retry is queued again at its ``retry_at`` (``RetryDue``);
- lease expired: a running attempt whose worker stopped renewing its lease is reported lost,
  a failed retryable completion with an id derived from the attempt, so it applies once;
- SLA deadline: an active run past its deadline is announced once (``run.deadline_missed``);
- waits that failed: a queued task whose wait timed out (counted from when it was queued), or
  whose check erred ``CHECK_ERRORS_TO_FAIL`` times in a row, fails (``WaitFailed``).

Every replica runs them; the state guards make each timer fire once.
"""

from __future__ import annotations

from collections.abc import Sequence

from service import metrics
from service.clock import utc_now, utc_timestamp
from service.engine.decide import decide
from service.engine.model import RetryDue, WaitFailed
from service.observability import get_logger
from service.orchestrator.batch import BatchApplier
from service.orchestrator.outcome import BatchOutcome
from service.orchestrator.outgoing import lost_attempt
from service.orchestrator.writing import Writing
from service.store.run_views import WaitingFor

log = get_logger(__name__)

CHECK_ERRORS_TO_FAIL = 3  # a check that could not tell this many times in a row fails its task


def wait_failure(wait: WaitingFor) -> str:
    """Why a wait failed, what it waited for and since when: the task's reason and alert."""
    what = wait.describe()
    since = "" if wait.since is None else f" since {utc_timestamp(wait.since)}"
    if wait.why.startswith("check_error"):
        return f"{wait.why} ({what}, waiting{since})"
    return f"wait_timeout: waited{since} for {what}"


class Timers:
    def __init__(
        self,
        writing: Writing,
        *,
        applier: BatchApplier,
    ) -> None:
        self._writing = writing
        self._store, self._outgoing, self._hub, self._actor = (
            writing.store,
            writing.outgoing,
            writing.hub,
            writing.actor,
        )
        self._applier = applier

    async def fire_due_retries(self, limit: int) -> int:
        """Queue again the tasks whose retry time has come; return how many were due."""
        due = await self._store.due_retries(limit)
        if due:  # a retry of a task that is no longer up for retry: another replica fired it
            await self._decide_each([(r.run_id, RetryDue(r.task_id)) for r in due])
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
            for run in late:
                metrics.SLA_MISSED.labels(run.pipeline_id).inc()
        return len(late)

    async def fail_waits(self, limit: int) -> int:
        """Fail the queued tasks whose wait timed out or whose check keeps erring."""
        failed = await self._store.failed_waits(limit, CHECK_ERRORS_TO_FAIL)
        if not failed:
            return 0
        events = [(wait.run_id, WaitFailed(wait.task_id, wait_failure(wait))) for wait in failed]
        for run_id, event in await self._decide_each(events):
            if isinstance(event, WaitFailed):
                why = event.reason
                log.warning("task.wait_failed", run_id=run_id, task_id=event.task_id, reason=why)
        return len(failed)

    async def _decide_each(
        self, events: Sequence[tuple[str, RetryDue | WaitFailed]]
    ) -> list[tuple[str, RetryDue | WaitFailed]]:
        """Have the engine decide each (run id, event) in one transaction, against the runs as
        the earlier ones left them; return those that applied (the rest found their task moved
        on, by another replica or an earlier event). Then admit what ended runs made room for."""
        outcome = BatchOutcome()
        applied = []
        async with self._writing.working(outcome) as ws:
            await ws.load(run_id for run_id, _ in events)
            for run_id, event in events:
                if not ws.is_active(run_id):
                    continue
                decision = decide(ws.pipelines[run_id].graph, ws.snapshot(run_id), event)
                if decision.ignored is None:
                    ws.apply(run_id, decision.transitions)
                    applied.append((run_id, event))
        await self._applier.admission.admit(outcome.to_admit)
        return applied
