"""The check poker, on every replica: pokes the checks of queued tasks whose poke is due
(``probes.py``), at most ``concurrency`` at once, and records each answer. It polls (a
first poke comes within the poll interval of the task being queued): checks wait minutes,
and the hot path of every other task pays nothing for them. A check that says
ready lets its task be claimed (the claimers are woken); one that is not ready yet is poked
again after its interval (grown by its backoff). Timeouts and checks that keep erring fail
their task through the timer loop (``orchestrator/timers.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp

from service.observability import get_logger
from service.orchestrator.work_hub import Work, WorkHub
from service.probes import poke
from service.store import Store
from service.store.records import DueCheck, Poke
from service.supervision import Loop

log = get_logger(__name__)

TAKE_MARGIN = 5.0  # seconds a taken check stays taken beyond its probe's timeout


class CheckPoker(Loop):
    name = "checks"

    def __init__(
        self,
        *,
        store: Store,
        hub: WorkHub,
        concurrency: int,
        probe_timeout: float,
        databases: Mapping[str, str],
        poll_interval: float,
    ) -> None:
        super().__init__(idle_wait=poll_interval)
        self._store = store
        self._hub = hub
        self._concurrency = concurrency
        self._probe_timeout = probe_timeout
        self._databases = databases
        self._session: aiohttp.ClientSession | None = None
        self.pokes = 0

    async def step(self) -> bool:
        due = await self._store.due_checks(self._concurrency, self._probe_timeout + TAKE_MARGIN)
        if not due:
            return False
        pokes = await asyncio.gather(*(self._poke(check) for check in due))
        await self._store.record_pokes(pokes)
        self.pokes += len(pokes)
        if any(p.ready for p in pokes):
            self._hub.notify(Work.TASKS)
        return len(due) == self._concurrency

    async def _poke(self, check: DueCheck) -> Poke:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self._probe_timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
        answer = await poke(
            check.probe,
            seconds=self._probe_timeout,
            databases=self._databases,
            session=self._session,
        )
        log.info(
            "check.poked",
            run_id=check.run_id,
            task_id=check.task_id,
            position=check.position,
            poke=check.pokes + 1,
            result=answer.result,
        )
        return Poke(check, answer.ready, answer.error, answer.result)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
