"""The timer loop, on every replica: fires due retries, reaps expired leases, flags missed
deadlines, fails tasks whose wait failed (``orchestrator/timers.py``), starts the runs of due
schedule fires (``orchestrator/schedules.py``), and once per poll
interval admits queued runs that a crash left waiting (``orchestrator/admission.py``); then
sleeps until the next retry is due, the poll interval, or a wake-up for a newly scheduled
retry, whichever comes first.

Leases are judged fairly: a lease is reaped only a whole lease period after it expired (its
holder stops an attempt it cannot renew within that time), and never in the first lease period
after this process has (re)gained the database: holders that lost it too get the time to
renew, and completions that waited out the outage get the time to arrive.
"""

from __future__ import annotations

import time

from service.clock import utc_now
from service.orchestrator.admission import Admission
from service.orchestrator.schedules import Scheduler
from service.orchestrator.timers import Timers
from service.orchestrator.work_hub import Work, WorkHub
from service.store import Store
from service.supervision import Loop

BATCH = 200  # timers handled per transaction
MIN_WAIT = 0.01  # seconds: a retry due now is fired on the next round, not in a busy loop


class TimerLoop(Loop):
    name = "timers"

    def __init__(
        self,
        *,
        timers: Timers,
        admission: Admission,
        scheduler: Scheduler,
        store: Store,
        hub: WorkHub,
        poll_interval: float,
        lease_seconds: float,
    ) -> None:
        super().__init__(idle_wait=poll_interval)
        self._timers = timers
        self._admission = admission
        self._scheduler = scheduler
        self._next_sweep = 0.0  # monotonic
        self._store = store
        self._poll_interval = poll_interval
        self._lease_seconds = lease_seconds
        self._reap_after: float | None = time.monotonic() + lease_seconds
        self._next_wait = poll_interval
        self.retries_fired = 0
        self.attempts_lost = 0
        self.deadlines_missed = 0
        self.waits_failed = 0
        self.runs_scheduled = 0
        hub.subscribe(Work.RETRIES, self.wake)

    async def step(self) -> bool:
        fired = await self._timers.fire_due_retries(BATCH)
        if self._reap_after is None:  # the database answers again
            self._reap_after = time.monotonic() + self._lease_seconds
        lost = 0
        if time.monotonic() >= self._reap_after:
            lost = await self._timers.reap_expired_leases(BATCH, self._lease_seconds)
        self.deadlines_missed += await self._timers.flag_missed_deadlines(BATCH)
        self.waits_failed += await self._timers.fail_waits(BATCH)
        self.runs_scheduled += await self._scheduler.fire_due()
        if time.monotonic() >= self._next_sweep:
            await self._admission.sweep()
            self._next_sweep = time.monotonic() + self._poll_interval
        self.retries_fired += fired
        self.attempts_lost += lost
        due = await self._store.next_retry_at()
        wait = self._poll_interval
        if due is not None:
            wait = min(max((due - utc_now()).total_seconds(), MIN_WAIT), wait)
        self._next_wait = wait
        return fired == BATCH or lost == BATCH

    async def recover(self) -> None:
        self._reap_after = None  # set again once the database answers

    def idle_wait(self) -> float:
        """Until the next retry is due, but no longer than the poll interval."""
        return self._next_wait
