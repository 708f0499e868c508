"""The watchdog: notices a loop that makes no progress and says so.

A loop stalls when one of its rounds runs too long (an await that never returns) or when it
has been failing too long (a server away); the intake stalls when messages wait and nothing is
committed. Each stall is logged once as an ERROR (``loop.stalled``, so it alerts), once when
it ends (``loop.unstalled``), shown by ``tributary_loop_stalled`` and by ``/readyz``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from service import metrics
from service.loops.consumer import EventConsumer
from service.observability import get_logger
from service.supervision import Loop

log = get_logger(__name__)

CHECK_INTERVAL = 5.0  # seconds between looks


class Watchdog(Loop):
    name = "watchdog"

    def __init__(
        self,
        *,
        loops: Sequence[Loop],
        consumer: EventConsumer,
        stall_seconds: float,
        interval: float = CHECK_INTERVAL,
    ) -> None:
        super().__init__(idle_wait=interval)
        self._loops = loops
        self._consumer = consumer
        self._stall_seconds = stall_seconds
        self.found: dict[str, str] = {}  # loop -> why, now

    async def step(self) -> bool:
        now = time.monotonic()
        found = {
            loop.name: why
            for loop in self._loops
            if (why := loop.stalled(now, self._stall_seconds)) is not None
        }
        stuck = self._consumer.stuck(self._stall_seconds)
        if stuck is not None:
            found.setdefault(self._consumer.name, stuck)
        for name in sorted(set(found) - set(self.found)):
            log.error("loop.stalled", loop=name, reason=found[name])
            metrics.LOOP_STALLED.labels(name).set(1)
        for name in sorted(set(self.found) - set(found)):
            log.info("loop.unstalled", loop=name)
            metrics.LOOP_STALLED.labels(name).set(0)
        self.found = found
        return False
