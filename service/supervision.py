"""One way to keep working through faults, used by every loop of the service.

A retriable failure (PostgreSQL or the broker away for a while, a lost race) is retried with
exponential backoff and jitter, logged once when the outage starts and once when it ends, and
counted (``tributary_loop_failures_total``). Anything else is a bug: it propagates, and the
service stops loudly rather than limp on or drop input.

A long-running loop is a :class:`Loop`: :meth:`Loop.step` does one round and says whether more
work may be waiting right now; between rounds the loop waits for a wake-up or its idle wait.
:meth:`Loop.run` steps forever under supervision; :meth:`Loop.run_burst` steps until the loop
is idle and returns, which makes loop tests deterministic (no polling sleeps). A single call
that must get through (a cache lookup inside an attempt) uses :func:`persistently`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from service import metrics
from service.errors import InfrastructureError, TributaryError
from service.observability import get_logger

log = get_logger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float = 0.1  # seconds before the first retry
    maximum: float = 5.0  # seconds between retries at most
    factor: float = 2.0
    jitter: float = 0.2  # each delay is off by up to this fraction, either way

    def delay(self, failures: int, sample: float) -> float:
        """Seconds to wait after ``failures`` failures in a row; ``sample`` in [-1, 1]."""
        base = min(self.first * self.factor ** max(failures - 1, 0), self.maximum)
        return base * (1.0 + self.jitter * sample)


DEFAULT_BACKOFF = Backoff()


class Outage:
    """A run of retriable failures of one loop or call: said once when it starts, once when
    it ends (with how long it lasted), each failure counted."""

    def __init__(self, name: str, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self.name = name
        self._backoff = backoff
        self.failures = 0
        self._since = 0.0
        self.last_error = ""

    def failed(self, error: TributaryError) -> float:
        """Record a failure; return how long to wait before trying again."""
        self.failures += 1
        self.last_error = str(error)
        metrics.LOOP_FAILURES.labels(self.name).inc()
        if self.failures == 1:
            self._since = time.monotonic()
            log.warning("loop.failing", loop=self.name, error=str(error))
        return self._backoff.delay(self.failures, random.uniform(-1.0, 1.0))

    def recovered(self) -> None:
        if self.failures:
            log.info(
                "loop.recovered",
                loop=self.name,
                failures=self.failures,
                seconds=round(time.monotonic() - self._since, 3),
            )
            self.failures = 0

    def failing_for(self, now: float) -> float:
        """Seconds since this outage began (0 when there is none)."""
        return now - self._since if self.failures else 0.0


def _retriable(error: TributaryError) -> TributaryError:
    if not error.retriable:
        raise error
    return error


async def persistently(
    call: Callable[[], Awaitable[T]], name: str, backoff: Backoff = DEFAULT_BACKOFF
) -> T:
    """``call()``, tried again after each retriable failure until it succeeds."""
    outage = Outage(name, backoff)
    while True:
        try:
            result = await call()
        except TributaryError as exc:
            await asyncio.sleep(outage.failed(_retriable(exc)))
            continue
        outage.recovered()
        return result


class Loop(ABC):
    """A long-running loop: rounds of work, a wait between them, supervision around both."""

    name: ClassVar[str]

    def __init__(self, *, idle_wait: float | None, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self._idle_wait = idle_wait  # seconds; None: only a wake-up starts the next round
        self._wakeup = asyncio.Event()
        self._outage = Outage(self.name, backoff)
        self._stopping = False
        self._round_started: float | None = None  # monotonic, while a round runs

    def wake(self) -> None:
        """There is work: start the next round now (or right after the current one)."""
        self._wakeup.set()

    def stop(self) -> None:
        """Let :meth:`run` return once the work there is now is done (at shutdown)."""
        self._stopping = True
        self.wake()

    @abstractmethod
    async def step(self) -> bool:
        """One round of work. True when more work may be waiting right now."""

    async def recover(self) -> None:
        """After a failed round, before the backoff: let go of what the failure left broken."""
        return None

    def idle_wait(self) -> float | None:
        """How long to wait for a wake-up when the last round found nothing more to do."""
        return self._idle_wait

    async def close(self) -> None:
        """When the loop ends, however it ends: let go of what it holds across rounds."""
        return None

    async def run(self) -> None:
        """Step forever: retriable failures are retried, anything else stops the loop."""
        try:
            await self._supervised()
        finally:
            await self.close()

    def stalled(self, now: float, after: float) -> str | None:
        """Why the loop makes no progress (one round running, or failing, for more than
        ``after`` seconds), or None."""
        if self._round_started is not None and now - self._round_started > after:
            return f"one round has run for {now - self._round_started:.0f}s"
        failing = self._outage.failing_for(now)
        if failing > after:
            return f"failing for {failing:.0f}s: {self._outage.last_error}"
        return None

    async def _round(self) -> bool:
        self._round_started = time.monotonic()
        try:
            return await self.step()
        finally:
            self._round_started = None

    async def _supervised(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                more = await self._round()
            except TributaryError as exc:
                _retriable(exc)
                try:
                    await self.recover()
                except TributaryError as again:
                    _retriable(again)  # still away: the next round will find out
                await asyncio.sleep(self._outage.failed(exc))
                continue
            self._outage.recovered()
            if not more:
                if self._stopping:
                    return
                await self._idle()

    async def run_burst(self) -> None:
        """Step until there is nothing more to do right now, then return (errors propagate)."""
        while await self.step():
            pass

    async def _idle(self) -> None:
        wait = self.idle_wait()
        if wait is not None and wait <= 0:
            return
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that
        # arrives as the wake-up does (bpo-42130), and the loop would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._wakeup.wait()


STARTUP_BACKOFF = Backoff(first=0.5, maximum=10.0)  # between tries of the servers at start


async def when_reachable(
    connect: Callable[[contextlib.AsyncExitStack], Awaitable[T]],
    stack: contextlib.AsyncExitStack,
    *,
    give_up_after: float,
    stop: asyncio.Event,
    waiting: Callable[[InfrastructureError, int, float], None],
) -> T | None:
    """``connect(stack)`` at start-up, tried again with backoff while a server does not answer
    (each failed try's half-made connections closed, ``waiting(error, tries, delay)`` told),
    for up to ``give_up_after`` seconds; then the last error, as why it gave up. None when
    ``stop`` is set meanwhile."""
    give_up_at = time.monotonic() + give_up_after
    tries = 0
    while True:
        attempt = contextlib.AsyncExitStack()
        try:
            made = await connect(attempt)
        except InfrastructureError as exc:
            await attempt.aclose()
            tries += 1
            left = give_up_at - time.monotonic()
            if left <= 0:
                raise InfrastructureError(
                    f"gave up waiting for the servers (startup_wait_seconds): {exc}"
                ) from exc
            delay = min(STARTUP_BACKOFF.delay(tries, random.uniform(-1.0, 1.0)), left)
            waiting(exc, tries, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
            if stop.is_set():
                return None
            continue
        except BaseException:
            await attempt.aclose()
            raise
        await stack.enter_async_context(attempt)
        return made
