"""The timer loop fires each retry at its computed time: not before, and promptly after."""

from __future__ import annotations

import asyncpg

from tests.support import Background, Orchestrate, completed, eventually, requested


async def test_retries_are_queued_at_their_backoff_times(
    orchestrate: Orchestrate, pg: asyncpg.Connection, background: Background
) -> None:
    rig = await orchestrate("flaky")
    # A poll interval far above the backoff: the loop must not rely on polling.
    timers = rig.timer_loop(5.0, lease_seconds=30)
    background(timers.run())
    await rig.apply([requested("flaky", "2026-11-21")])
    for attempt, backoff in ((1, 0.5), (2, 1.0)):
        [claim] = await rig.claim("w", 1)
        assert claim.attempt == attempt
        # The commit that schedules the retry wakes the loop through the hub.
        await rig.apply([completed(claim.run_id, "a", attempt, "failed")])
        retry_at = await pg.fetchval("SELECT retry_at FROM task_instances")
        failed_at = await pg.fetchval(
            "SELECT at FROM transitions WHERE to_state = 'up_for_retry' ORDER BY id DESC"
        )
        assert abs((retry_at - failed_at).total_seconds() - backoff) < 0.05
        await eventually(
            lambda: pg.fetchval("SELECT state FROM task_instances"),
            lambda s: s == "queued",
            10,
            f"retry {attempt}",
        )
        queued_at = await pg.fetchval(
            "SELECT at FROM transitions WHERE to_state = 'queued' ORDER BY id DESC"
        )
        late = (queued_at - retry_at).total_seconds()
        assert 0 <= late < 0.3, f"retry {attempt} fired {late:.3f} s after its time"
    assert timers.retries_fired == 2


async def test_a_burst_fires_what_is_due_and_returns(
    orchestrate: Orchestrate, pg: asyncpg.Connection
) -> None:
    rig = await orchestrate("flaky")
    timers = rig.timer_loop(5.0, lease_seconds=30)
    await rig.apply([requested("flaky", "2026-11-21")])
    [claim] = await rig.claim("w", 1)
    await rig.apply([completed(claim.run_id, "a", 1, "failed")])
    await timers.run_burst()
    assert await pg.fetchval("SELECT state FROM task_instances") == "up_for_retry"  # not yet due
    await pg.execute("UPDATE task_instances SET retry_at = now()")
    await timers.run_burst()
    assert await pg.fetchval("SELECT state FROM task_instances") == "queued"
    assert timers.retries_fired == 1
