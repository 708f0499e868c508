"""The part of a transaction that claims queued tasks: chosen in queue order to fit a budget,
their runs locked, moved to running under a lease; and remote requests nobody picked up. Mixed
into :class:`Transaction`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from asyncpg import Record

from service.store.queries import q
from service.store.records import ClaimBudget, ClaimedAttempt, LockedRun

if TYPE_CHECKING:
    from service.store.migrations import Connection

CLAIM_ROUNDS = 4  # choose-and-lock rounds per claim while other replicas take the head


def lookahead(slots: int) -> int:
    """How many queued tasks a claim for ``slots`` reads from the head of the queue: room to
    look past tasks that wait for data or checks, or for a pool with too little room, without
    reading the whole queue (tasks of full pools are not read at all)."""
    return max(64, 8 * slots)


class ClaimQueries:
    conn: Connection
    passed_over: int  # queued tasks its claims chose but left (taken by another, or held)

    async def lock_runs(self, run_ids: Sequence[str]) -> dict[str, LockedRun]:
        """Lock the runs (in run id order); runs that do not exist are absent."""
        rows = await self.conn.fetch(q("lock_runs"), sorted(set(run_ids)))
        return {row["run_id"]: LockedRun.from_row(dict(row)) for row in rows}

    async def try_lock_runs(self, run_ids: Sequence[str]) -> set[str]:
        """Lock those of the runs no other transaction holds, without waiting; return them."""
        rows = await self.conn.fetch(q("try_lock_runs"), sorted(set(run_ids)))
        return {row["run_id"] for row in rows}

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
        await self.conn.execute(q("plan_claims_generically"))
        claimed: list[ClaimedAttempt] = []
        passed_over: list[tuple[str, str]] = []
        for _ in range(CLAIM_ROUNDS):
            free = budget.less(claimed)
            chosen = await self.conn.fetch(
                q("claimable_tasks"),
                free.slots,
                free.cpu_cores,
                free.memory_mb,
                list(free.pools),
                list(free.pools.values()),
                [p[0] for p in passed_over],
                [p[1] for p in passed_over],
                free.remote,
                lookahead(free.slots),
            )
            if not chosen:
                break
            chosen = await self._lock_runs_of(chosen, wait_for_runs, passed_over)
            if not chosen:
                continue
            rows = await self.conn.fetch(
                q("claim_tasks"),
                worker_id,
                [r["run_id"] for r in chosen],
                [r["task_id"] for r in chosen],
                lease_seconds,
                pickup_seconds,
            )
            got = [ClaimedAttempt.from_row(dict(row)) for row in rows]
            claimed.extend(got)
            taken = {(c.run_id, c.task_id) for c in got}
            missed = [
                (r["run_id"], r["task_id"])
                for r in chosen
                if (r["run_id"], r["task_id"]) not in taken
            ]
            if not missed:
                break
            passed_over.extend(missed)
        self.passed_over += len(passed_over)
        return claimed

    async def _lock_runs_of(
        self, chosen: list[Record], wait: bool, passed_over: list[tuple[str, str]]
    ) -> list[Record]:
        """Lock the runs of the chosen tasks; those left (``wait`` false: of runs another
        transaction holds) are added to ``passed_over``. Returns the tasks to claim."""
        if wait:
            # Wait (briefly) for the runs, in run-id order like every writer: skipping them
            # would leave the tasks of a busy run unclaimed until the next poll.
            await self.lock_runs([r["run_id"] for r in chosen])
            return chosen
        free_runs = await self.try_lock_runs([r["run_id"] for r in chosen])
        passed_over.extend(
            (r["run_id"], r["task_id"]) for r in chosen if r["run_id"] not in free_runs
        )
        return [r for r in chosen if r["run_id"] in free_runs]

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
