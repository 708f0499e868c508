"""Timers kept in PostgreSQL, so they fire after a restart and on whichever replica is up.

- retry due: a task up for retry is queued again at its ``retry_at``;
- lease expired: a running attempt whose worker stopped renewing its lease is reported lost
  (a failed, retryable completion) and the retry policy decides;
- SLA deadline: an active run past its deadline is announced once (run.deadline_missed).

Every replica runs this loop; the state guards make a timer fire once.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from service.coordinator import Coordinator
from service.errors import TributaryError
from service.observability import get_logger
from service.store import Store

log = get_logger(__name__)

BATCH = 200  # timers handled per transaction
RETRY_MAX_DELAY = 5.0  # seconds between tries while the database is unavailable


class TimerLoop:
    def __init__(self, coordinator: Coordinator, store: Store, poll_interval: float) -> None:
        self._coordinator = coordinator
        self._store = store
        self._poll_interval = poll_interval
        self._wakeup = asyncio.Event()
        self.retries_fired = 0
        self.attempts_lost = 0
        self.deadlines_missed = 0

    def wake(self) -> None:
        """A retry was scheduled: look again at when the next one is due."""
        self._wakeup.set()

    async def run(self) -> None:
        delay = 0.1
        while True:
            self._wakeup.clear()
            try:
                fired = await self._coordinator.fire_due_retries(BATCH)
                lost = await self._coordinator.reap_expired_leases(BATCH)
                self.deadlines_missed += await self._coordinator.flag_missed_deadlines(BATCH)
                wait = await self._next_wait()
            except TributaryError as exc:
                if not exc.retriable:
                    raise
                log.warning("timers.retry", error=str(exc), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)
                continue
            delay = 0.1
            self.retries_fired += fired
            self.attempts_lost += lost
            if fired == BATCH or lost == BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)

    async def _next_wait(self) -> float:
        """Until the next retry is due, but no longer than the poll interval."""
        due = await self._store.next_retry_at()
        if due is None:
            return self._poll_interval
        return min(max((due - datetime.now(UTC)).total_seconds(), 0.0), self._poll_interval)
