"""Heartbeats: the leases of this process's running attempts, renewed three times per lease.

An attempt whose lease expires is judged lost by the timer loop of any replica; renewing keeps
that from happening while this process is alive and runs it.
"""

from __future__ import annotations

from service.loops.executor import LocalExecutor
from service.store import Store
from service.supervision import Loop

RENEWALS_PER_LEASE = 3


class LeaseKeeper(Loop):
    name = "heartbeat"

    def __init__(
        self, *, store: Store, executor: LocalExecutor, worker_id: str, lease_seconds: float
    ) -> None:
        super().__init__(idle_wait=lease_seconds / RENEWALS_PER_LEASE)
        self._store = store
        self._executor = executor
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds

    async def step(self) -> bool:
        if self._executor.running:
            await self._store.renew_leases(self._worker_id, self._lease_seconds)
        return False
