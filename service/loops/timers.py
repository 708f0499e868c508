"""The timer loop, on every replica: fires due retries, reaps expired leases, flags missed
deadlines (``orchestrator/timers.py``), then sleeps until the next retry is due, the poll
interval, or a wake-up for a newly scheduled retry, whichever comes first."""

from __future__ import annotations

from service.clock import utc_now
from service.orchestrator.timers import Timers
from service.orchestrator.work_hub import Work, WorkHub
from service.store import Store
from service.supervision import Loop

BATCH = 200  # timers handled per transaction
MIN_WAIT = 0.01  # seconds: a retry due now is fired on the next round, not in a busy loop


class TimerLoop(Loop):
    name = "timers"

    def __init__(self, *, timers: Timers, store: Store, hub: WorkHub, poll_interval: float) -> None:
        super().__init__(idle_wait=poll_interval)
        self._timers = timers
        self._store = store
        self._poll_interval = poll_interval
        self._next_wait = poll_interval
        self.retries_fired = 0
        self.attempts_lost = 0
        self.deadlines_missed = 0
        hub.subscribe(Work.RETRIES, self.wake)

    async def step(self) -> bool:
        fired = await self._timers.fire_due_retries(BATCH)
        lost = await self._timers.reap_expired_leases(BATCH)
        self.deadlines_missed += await self._timers.flag_missed_deadlines(BATCH)
        self.retries_fired += fired
        self.attempts_lost += lost
        due = await self._store.next_retry_at()
        wait = self._poll_interval
        if due is not None:
            wait = min(max((due - utc_now()).total_seconds(), MIN_WAIT), wait)
        self._next_wait = wait
        return fired == BATCH or lost == BATCH

    def idle_wait(self) -> float:
        """Until the next retry is due, but no longer than the poll interval."""
        return self._next_wait
