"""kill -9, again and again, with the default retry policy (one attempt): no run fails, every
task instance runs to its end exactly once, never two copies at once."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import asyncpg
import pytest

from tests.chaos.rig import Deploy, check_marked, marked_triggers, report, succeeded
from tests.support import eventually, produce

pytestmark = pytest.mark.chaos
RUNS = 16
KILLS = 5
RAPID = (1, 2)  # these kills come as soon as the service is back: three lives in a lease
LATE = 3  # this restart comes later than a lease: what ran is stopped, then retried
LEASE = 3.0  # seconds
TASK_SECONDS = 4.0  # longer than a restart, and than a lease
LOST = "SELECT coalesce(sum(lost_attempts), 0) FROM task_instances"
JUST_STARTED = """
    SELECT count(*) FROM task_instances
    WHERE state = 'running' AND started_at > now() - interval '0.5 seconds'
"""


async def test_a_kill_storm_fails_no_run_and_runs_nothing_twice(
    database_url: str, kafka_bootstrap: str, marks: Path, deploy: Deploy
) -> None:
    seed = int(os.environ.get("CHAOS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"CHAOS_SEED={seed}")  # shown when the test fails: run it again with it
    service = await deploy(
        ["marked"],
        database_url=database_url,
        kafka=kafka_bootstrap,
        lease_ttl_seconds=LEASE,
        timer_poll_interval_seconds=0.2,
        max_parallel_tasks=8,
        shutdown_drain_seconds=1,
        mark_seconds=str(TASK_SECONDS),
    )
    triggers = marked_triggers(RUNS)
    await produce(kafka_bootstrap, service.setting("topic_triggers"), triggers)
    conn = await asyncpg.connect(database_url)
    try:
        for kill in range(KILLS):
            if kill == LATE:  # with an attempt that has longer to go than the service is away
                # Restarts quicker than a lease, even back to back, lost nothing so far.
                assert await conn.fetchval(LOST) == 0
                await eventually(lambda: conn.fetchval(JUST_STARTED), bool, 60, "a fresh start")
            elif kill not in RAPID:
                await asyncio.sleep(rng.uniform(0.2, 1.5))
            service.kill()  # SIGKILL: no drain, no goodbye
            if kill == LATE:
                await asyncio.sleep(LEASE + 1.5)
            service = service.another(f"service-{kill + 1}")
            service.start()
            await service.wait_started(timeout=60)
            last_restart = time.monotonic()
        await succeeded(conn, RUNS, 120)
        await check_marked(conn, marks, RUNS)
        taken = sum(e["still_running"] for e in service.events("attempts.taken_over"))
        lost = await conn.fetchval(LOST)
        report(
            "kill storm",
            seed=seed,
            runs=RUNS,
            kills=KILLS,
            taken_over_running=taken,
            lost_and_retried=lost,
            all_succeeded_after_last_restart=f"{time.monotonic() - last_restart:.1f} s",
        )
        assert taken > 0, "restarts took running attempts over"
        assert lost > 0, "the late restart found attempts stopped and retried them"
        assert service.alive
        assert not service.events("service.task_died")
    finally:
        await conn.close()
