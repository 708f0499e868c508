"""The part of a transaction that claims queued tasks: chosen in queue order to fit a budget,
their runs locked, moved to running under a lease; and remote requests nobody picked up. Mixed
into :class:`Transaction`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

from service.store.queries import q
from service.store.records import ClaimBudget, ClaimedAttempt

if TYPE_CHECKING:
    from service.store.migrations import Connection

CLAIM_ROUNDS = 4  # choose-and-lock rounds per claim while other replicas take the head


def lookahead(slots: int) -> int:
    """How many queued tasks a claim for ``slots`` reads from the head of the queue: room to
    look past tasks that wait for data or checks, or for a pool with too little room, without
    reading the whole queue (tasks of full pools are not read at all)."""
    return max(64, 8 * slots)


WAIT_FOR_RUNS = "FOR UPDATE OF r\n"
SKIP_HELD_RUNS = "FOR UPDATE OF r SKIP LOCKED\n"


@cache
def claim_statement(wait_for_runs: bool) -> str:
    """``claim_queued``, or its variant that passes over runs another transaction holds."""
    sql = q("claim_queued")
    if sql.count(WAIT_FOR_RUNS) != 1:
        raise ValueError("claim_queued must lock the chosen runs with one FOR UPDATE OF r")
    return sql if wait_for_runs else sql.replace(WAIT_FOR_RUNS, SKIP_HELD_RUNS)


class ClaimQueries:
    conn: Connection
    passed_over: int  # queued tasks its claims chose but left (taken by another, or held)
    planned_generically: bool  # its statements are planned once per connection, not per call

    async def plan_generically(self) -> None:
        """Plan the rest of the transaction's statements once per connection (a claim's, a
        hop's: they cost more to plan than to run)."""
        if not self.planned_generically:
            await self.conn.execute(q("plan_generically"))
            self.planned_generically = True

    async def claim_tasks(
        self,
        worker_id: str,
        budget: ClaimBudget,
        lease_seconds: float,
        pickup_seconds: float | None = None,
        *,
        wait_for_runs: bool = True,
    ) -> list[ClaimedAttempt]:
        """Move the queued tasks that fit ``budget`` to running for this worker.

        Replicas claiming at once choose the same head of the queue; rows another one locked
        first are passed over and the next ones chosen, for a few rounds. Without
        ``wait_for_runs`` (a transaction that holds runs already: locking more in any order
        could wait in a circle), tasks of runs another transaction holds are passed over too.
        """
        await self.plan_generically()
        statement = claim_statement(wait_for_runs)
        claimed: list[ClaimedAttempt] = []
        passed_over: list[tuple[str, str]] = []
        for _ in range(CLAIM_ROUNDS):
            free = budget.less(claimed)
            rows = await self.conn.fetch(
                statement,
                free.slots,
                free.cpu_cores,
                free.memory_mb,
                list(free.pools),
                list(free.pools.values()),
                [p[0] for p in passed_over],
                [p[1] for p in passed_over],
                free.remote,
                lookahead(free.slots),
                worker_id,
                lease_seconds,
                pickup_seconds,
            )
            claimed.extend(
                ClaimedAttempt.from_row(dict(r)) for r in rows if r["attempt"] is not None
            )
            missed = [(r["run_id"], r["task_id"]) for r in rows if r["attempt"] is None]
            if not missed:
                break
            passed_over.extend(missed)
        self.passed_over += len(passed_over)
        return claimed

    async def unpicked_requests(self, limit: int, margin: float) -> list[ClaimedAttempt]:
        """Remote attempts no worker picked up in time (locked for this transaction)."""
        rows = await self.conn.fetch(q("unpicked_requests"), limit, margin)
        return [ClaimedAttempt.from_row(dict(row)) for row in rows]

    async def extend_pickup(
        self, attempts: Sequence[ClaimedAttempt], seconds: float
    ) -> dict[tuple[str, str], datetime]:
        """A new pickup time for each attempt requested again: (run, task) -> the time."""
        rows = await self.conn.fetch(
            q("extend_pickup"),
            [a.run_id for a in attempts],
            [a.task_id for a in attempts],
            [a.attempt for a in attempts],
            seconds,
        )
        return {(row["run_id"], row["task_id"]): row["pickup_by"] for row in rows}
