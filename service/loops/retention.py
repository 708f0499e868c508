"""Retention, on every replica: the transition log, the ids of applied events, sent outbox
rows and ignored events older than ``history_retention_days`` are deleted, oldest first, a
small batch per table per statement, so the hot path never waits behind a long delete. A
round that deleted a full batch anywhere is followed by another at once; otherwise the loop
waits its interval. Replicas prune side by side: rows another one is deleting are passed over.
"""

from __future__ import annotations

from datetime import timedelta

from service import metrics
from service.clock import utc_now
from service.observability import get_logger
from service.store import Store
from service.supervision import Loop

log = get_logger(__name__)

BATCH = 1_000  # rows per table per statement
INTERVAL = 60.0  # seconds between rounds once nothing old is left


class Retention(Loop):
    name = "retention"

    def __init__(
        self, *, store: Store, keep: timedelta, batch: int = BATCH, interval: float = INTERVAL
    ) -> None:
        super().__init__(idle_wait=interval)
        self._store = store
        self._keep = keep
        self._batch = batch

    async def step(self) -> bool:
        pruned = await self._store.prune_history(utc_now() - self._keep, self._batch)
        for table, rows in pruned.items():
            metrics.HISTORY_PRUNED.labels(table).inc(rows)
        if any(pruned.values()):
            log.info("history.pruned", **pruned)
        return any(rows >= self._batch for rows in pruned.values())
