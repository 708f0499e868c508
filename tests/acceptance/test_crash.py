"""kill -9 at random moments: every run still ends, nothing is lost, nothing happens twice.

The real service runs as a subprocess over 200 runs of a small diamond pipeline, is killed
with SIGKILL five times at random moments and restarted each time. Attempts running at a kill
go on in the attempt keeper and are taken over by the restarted service (or, when it is down
longer than a lease, stopped and retried); unacknowledged events come back through Kafka
redelivery, unpublished status events through the outbox. No task instance ever runs twice at
once (each holds a lock while it works, and a second copy would say so).
"""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import asyncpg
import pytest

from tests.acceptance.diamond import check_database, check_status_topic, triggers, unfinished
from tests.support import RunService, eventually, produce

RUNS = 200
KILLS = 5
RUNNING = "SELECT count(*) FROM task_instances WHERE state = 'running'"


@pytest.mark.crash
async def test_kill_9_at_random_moments_loses_nothing(
    run_service: RunService, database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    locks = tmp_path / "locks"
    locks.mkdir()
    service = await run_service(
        "diamond",
        env={"DIAMOND_LOCKS": str(locks)},
        lease_ttl_seconds="2",
        timer_poll_interval_seconds="0.2",
        max_parallel_tasks="8",
        shutdown_drain_seconds="1",
    )
    await produce(
        kafka_bootstrap,
        service.setting("topic_triggers"),
        [(b"crash_ready", e.to_bytes()) for e in triggers(RUNS)],
    )
    conn = await asyncpg.connect(database_url)
    running_at_kill = []
    try:
        for kill in range(KILLS):
            # A restarted service consumes once its group has let the dead member go: kill
            # each one at a random moment once it works.
            await eventually(lambda: conn.fetchval(RUNNING), lambda n: n > 0, 60, "work")
            await asyncio.sleep(rng.uniform(0, 1.0))
            service.kill()  # SIGKILL: no drain, no goodbye
            running_at_kill.append(await conn.fetchval(RUNNING))
            service = service.another(f"service-{kill + 1}")
            service.start()
            await service.wait_started()
        await eventually(
            lambda: unfinished(conn, RUNS), lambda n: n == 0, 120, f"every run to end (seed {seed})"
        )
        await eventually(
            lambda: conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"),
            lambda n: n == 0,
            30,
            "the outbox to drain",
        )
        # The kills landed while attempts were running, and those attempts were taken over
        # by the restarted service, or stopped and retried when it came back too late.
        assert sum(running_at_kill) > 0, running_at_kill
        taken = service.events("attempts.taken_over")
        adopted = sum(e["still_running"] + e["ended_meanwhile"] for e in taken)
        lost = await conn.fetchval("SELECT sum(lost_attempts) FROM task_instances")
        assert adopted + lost > 0, (adopted, lost)
        assert not (locks / "overlaps").exists(), (locks / "overlaps").read_text()
        print(f"seed {seed}: running at kills {running_at_kill}, taken over {adopted}, lost {lost}")
        await check_database(conn, RUNS, f"seed {seed}")
        await check_status_topic(conn, kafka_bootstrap, service.setting("topic_status"))
        assert service.stop() == 0, service.log_text()[-3000:]
    finally:
        await conn.close()
