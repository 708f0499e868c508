"""kill -9 at random moments: every run still ends, nothing is lost, nothing happens twice.

The real service runs as a subprocess over 200 runs of a small diamond pipeline, is killed
with SIGKILL five times at random moments and restarted each time. Lost attempts come back
through expired leases, unacknowledged events through Kafka redelivery, unpublished status
events through the outbox.
"""

from __future__ import annotations

import asyncio
import os
import random
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest

from service.bus.envelope import DATASET_READY, new_event
from tests.conftest import service_environment
from tests.support import ServiceProcess, TopicReader, eventually, produce

RUNS = 200
KILLS = 5
PIPELINE = """\
id: crash_diamond
triggers:
  datasets: [{dataset: crash_ready}]
defaults:
  retry: {max_attempts: 10, backoff: {base: 0.1s, factor: 2, max: 1s}, jitter: 0.2}
tasks:
  - {id: extract, command: [sh, -c, "sleep 0.02"]}
  - {id: left, requires: [extract], command: [sh, -c, "sleep 0.02"]}
  - {id: right, requires: [extract], command: [sh, -c, "sleep 0.02"]}
  - {id: load, requires: [left, right], command: [sh, -c, "sleep 0.02"]}
"""
TASKS = 4


@pytest.mark.crash
async def test_kill_9_at_random_moments_loses_nothing(
    tmp_path: Path, database_url: str, kafka_bootstrap: str, topic_prefix: str, redis_prefix: str
) -> None:
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "crash.yaml").write_text(PIPELINE)
    env = service_environment(
        database_url,
        kafka_bootstrap,
        topic_prefix,
        redis_prefix,
        pipelines_dir=str(pipelines),
        task_log_dir=str(tmp_path / "logs"),
        lease_ttl_seconds="2",
        timer_poll_interval_seconds="0.2",
        max_parallel_tasks="8",
        shutdown_drain_seconds="1",
    )
    events = [
        new_event(
            DATASET_READY,
            "urn:test:crash",
            {"dataset": "crash_ready", "partition": (date(2025, 1, 1) + timedelta(i)).isoformat()},
        )
        for i in range(RUNS)
    ]
    await produce(
        kafka_bootstrap,
        env["TRIBUTARY_TOPIC_TRIGGERS"],
        [(b"crash_ready", e.to_bytes()) for e in events],
    )

    conn = await asyncpg.connect(database_url)
    running_at_kill = []
    try:
        for kill in range(KILLS):
            service = ServiceProcess(env, tmp_path / f"service-{kill}.log")
            service.start()
            await service.wait_started()
            await asyncio.sleep(rng.uniform(0.2, 2.5))
            service.kill()  # SIGKILL: no drain, no goodbye
            running_at_kill.append(
                await conn.fetchval("SELECT count(*) FROM task_instances WHERE state = 'running'")
            )
        service = ServiceProcess(env, tmp_path / "service-final.log")
        service.start()
        try:
            await service.wait_started()

            async def unfinished() -> int:
                count: int = await conn.fetchval(
                    "SELECT count(*) FROM runs WHERE state NOT IN ('success', 'failed')"
                )
                runs: int = await conn.fetchval("SELECT count(*) FROM runs")
                return count + (RUNS - runs)

            await eventually(unfinished, lambda n: n == 0, 120, f"every run to end (seed {seed})")
            await eventually(
                lambda: conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"),
                lambda n: n == 0,
                30,
                "the outbox to drain",
            )
            # The kills landed while attempts were running, and those attempts came back.
            assert sum(running_at_kill) > 0, running_at_kill
            lost = await conn.fetchval(
                "SELECT count(*) FROM task_attempts WHERE error_snippet LIKE '%lease%'"
            )
            assert lost > 0
            print(f"seed {seed}: running at each kill {running_at_kill}, attempts lost {lost}")
            await check_database(conn, seed)
            await check_status_topic(conn, kafka_bootstrap, env["TRIBUTARY_TOPIC_STATUS"])
        finally:
            assert service.stop() == 0, service.log_text()[-3000:]
    finally:
        await conn.close()


async def check_database(conn: asyncpg.Connection, seed: int) -> None:
    states = await conn.fetch("SELECT state, count(*) AS n FROM runs GROUP BY state")
    assert {r["state"]: r["n"] for r in states} == {"success": RUNS}, f"seed {seed}"
    assert await conn.fetchval("SELECT count(*) FROM task_instances WHERE state = 'running'") == 0
    assert (
        await conn.fetchval("SELECT count(*) FROM task_instances WHERE state = 'success'")
        == RUNS * TASKS
    )
    # Each task's success is recorded once, however many attempts were lost to the kills.
    doubled = await conn.fetchval(
        "SELECT count(*) FROM (SELECT run_id, task_id FROM task_attempts WHERE state = 'success'"
        " GROUP BY run_id, task_id HAVING count(*) > 1) AS d"
    )
    assert doubled == 0
    assert (
        await conn.fetchval("SELECT count(*) FROM task_attempts WHERE state = 'success'")
        == RUNS * TASKS
    )
    # Every run was created once, by one trigger event each.
    assert await conn.fetchval("SELECT count(DISTINCT trigger_key) FROM runs") == RUNS


async def check_status_topic(conn: asyncpg.Connection, bootstrap: str, topic: str) -> None:
    expected = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM outbox")}
    async with TopicReader(bootstrap, topic) as reader:
        records = await reader.read_until(
            lambda rs: expected <= {orjson.loads(r.value)["id"] for r in rs}, timeout=60
        )
    seen = [orjson.loads(r.value)["id"] for r in records]
    assert expected <= set(seen)
    assert set(seen) <= expected, "the topic holds an event the outbox never had"
    # At least once: a crash between publishing and marking sent repeats an id, never invents one.
    assert len(seen) >= len(expected)
