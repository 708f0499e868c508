"""Heartbeats: the leases of this process's running attempts, renewed three times per lease,
and each renewal confirmed to the attempt keeper.

An attempt whose lease expired a lease period ago is judged lost by the timer loop of any
replica. The keeper stops an attempt whose lease it has not had confirmed for a lease period:
so an attempt this process cannot vouch for (it lost the database) is stopped before anyone
may retry it.

An attempt whose run an operator cancelled is no longer renewed: this loop, woken by the
commit of the cancel on this replica (on others within a third of a lease), has the keeper
stop it — SIGTERM, grace, SIGKILL — and run its rollback.
"""

from __future__ import annotations

import time

from service.execution.keeper_client import KeeperClient
from service.loops.executor import LocalExecutor
from service.orchestrator.work_hub import Work, WorkHub
from service.store import Store
from service.supervision import Loop

RENEWALS_PER_LEASE = 3


class LeaseKeeper(Loop):
    name = "heartbeat"

    def __init__(
        self,
        *,
        store: Store,
        executor: LocalExecutor,
        keeper: KeeperClient,
        worker_id: str,
        lease_seconds: float,
        hub: WorkHub | None = None,
    ) -> None:
        super().__init__(idle_wait=lease_seconds / RENEWALS_PER_LEASE)
        self._store = store
        self._executor = executor
        self._keeper = keeper
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds
        if hub is not None:
            hub.subscribe(Work.STOPS, self.wake)

    async def step(self) -> bool:
        if self._executor.running:
            asked = time.monotonic()  # the lease counts from before the statement
            renewed = await self._store.renew_leases(self._worker_id, self._lease_seconds)
            left = self._lease_seconds - (time.monotonic() - asked)
            await self._keeper.confirm(renewed, left)
            unrenewed = set(self._executor.held()) - set(renewed)
            if unrenewed:
                for key in await self._store.cancelled_attempts(sorted(unrenewed, key=str)):
                    await self._keeper.interrupt(key, "cancelled by an operator", rollback=True)
        return False
