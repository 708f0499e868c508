"""The supervisor every loop runs under: what is retried, what stops, how a loop ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from service import metrics
from service.errors import EventError, InfrastructureError
from service.supervision import Backoff, Loop, persistently
from tests.support import Background, stop_task

QUICK = Backoff(first=0.001, maximum=0.002)


class Script(Loop):
    """A loop that plays a script: each round takes the next item (an exception to raise,
    or whether more work is waiting); then idles."""

    name = "script"

    def __init__(self, *script: bool | Exception, idle_wait: float | None = 10.0) -> None:
        super().__init__(idle_wait=idle_wait, backoff=QUICK)
        self.script = list(script)
        self.rounds = 0
        self.recovered = 0
        self.closed = False
        self.idle = asyncio.Event()

    async def step(self) -> bool:
        self.rounds += 1
        if not self.script:
            self.idle.set()
            return False
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def recover(self) -> None:
        self.recovered += 1

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def logs() -> Iterator[list[dict[str, object]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def failures(loop: str) -> float:
    return metrics.REGISTRY.get_sample_value("tributary_loop_failures_total", {"loop": loop}) or 0


async def test_a_server_away_is_retried_and_said_once_each_way(
    logs: list[dict[str, object]],
) -> None:
    away = InfrastructureError("PostgreSQL is unavailable")
    loop = Script(away, away, away, True, idle_wait=None)
    before = failures("script")
    task = asyncio.create_task(loop.run())
    async with asyncio.timeout(5):
        await loop.idle.wait()
    assert await stop_task(task)
    assert loop.rounds == 5  # three failures, the round with more work, the idle one
    assert loop.recovered == 3  # after each failure, before the backoff
    assert failures("script") == before + 3
    said = [e["event"] for e in logs if e["event"] in ("loop.failing", "loop.recovered")]
    assert said == ["loop.failing", "loop.recovered"]
    assert loop.closed


async def test_a_bug_stops_the_loop_loudly() -> None:
    loop = Script(True, KeyError("task_id"))
    with pytest.raises(KeyError):
        await loop.run()
    assert loop.recovered == 0
    assert loop.closed  # what it held is let go, however it ends


async def test_a_non_retriable_error_of_ours_stops_it_too() -> None:
    with pytest.raises(EventError):
        await Script(EventError("not applied here")).run()


async def test_a_burst_runs_until_idle_and_returns() -> None:
    loop = Script(True, True, False, True)
    await loop.run_burst()
    assert loop.rounds == 3  # the third round found nothing more: the fourth never ran


async def test_stop_finishes_the_work_there_is_then_returns() -> None:
    loop = Script(idle_wait=None)
    task = asyncio.create_task(loop.run())
    async with asyncio.timeout(5):
        await loop.idle.wait()
    loop.script += [True, True, False]
    loop.stop()
    async with asyncio.timeout(5):
        await task
    assert loop.script == []


@pytest.mark.parametrize("ticks", [0, 1, 2, 3])
async def test_a_cancel_that_lands_with_a_wake_up_still_stops_the_loop(ticks: int) -> None:
    # asyncio.wait_for on Python 3.11 loses a cancellation that arrives as its inner future
    # completes (bpo-42130): the loop would run on and shutdown would hang.
    loop = Script(idle_wait=60.0)
    task = asyncio.create_task(loop.run())
    async with asyncio.timeout(5):
        await loop.idle.wait()
    loop.wake()
    for _ in range(ticks):
        await asyncio.sleep(0)
    async with asyncio.timeout(5):
        assert await stop_task(task)


async def test_persistently_gets_a_call_through() -> None:
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise InfrastructureError("broker away")
        return "sent"

    assert await persistently(flaky, "test", QUICK) == "sent"
    assert len(calls) == 4


@given(
    failures=st.integers(min_value=1, max_value=60),
    sample=st.floats(min_value=-1.0, max_value=1.0),
)
def test_backoff_grows_to_its_cap_with_bounded_jitter(failures: int, sample: float) -> None:
    backoff = Backoff(first=0.1, maximum=5.0, factor=2.0, jitter=0.2)
    delay = backoff.delay(failures, sample)
    base = min(0.1 * 2 ** (failures - 1), 5.0)
    assert base * 0.8 - 1e-9 <= delay <= base * 1.2 + 1e-9
    assert delay <= 6.0


class Hung(Loop):
    """A loop whose round never returns (an await that hangs)."""

    name = "hung"

    def __init__(self) -> None:
        super().__init__(idle_wait=None)
        self.entered = asyncio.Event()

    async def step(self) -> bool:
        self.entered.set()
        await asyncio.Event().wait()
        return False


async def test_a_loop_says_when_it_makes_no_progress(background: Background) -> None:
    hung = Hung()
    background(hung.run())
    async with asyncio.timeout(5):
        await hung.entered.wait()
    now = time.monotonic()
    assert hung.stalled(now, after=60) is None
    assert hung.stalled(now + 61, after=60) == "one round has run for 61s"
    failing = Script(InfrastructureError("PostgreSQL is unavailable"), idle_wait=None)
    failing._outage.failed(InfrastructureError("PostgreSQL is unavailable"))
    assert failing.stalled(time.monotonic() + 61, after=60) == (
        "failing for 61s: PostgreSQL is unavailable"
    )
