"""Redis stopped and started again: runs go on, readiness does not depend on it, and live
state comes back by itself."""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.chaos.rig import (
    Deploy,
    PrivateRedis,
    check_marked,
    marked_triggers,
    readiness,
    report,
    succeeded,
)
from tests.support import eventually, produce

pytestmark = pytest.mark.chaos
RUNS = 20
FIRST_DAY = date(2025, 1, 1)


async def test_a_redis_outage_is_harmless_and_live_state_comes_back(
    database_url: str,
    kafka_bootstrap: str,
    private_redis: PrivateRedis,
    marks: Path,
    deploy: Deploy,
) -> None:
    service = await deploy(
        ["marked"],
        database_url=database_url,
        kafka=kafka_bootstrap,
        redis_url=private_redis.url,
        max_parallel_tasks=4,
    )
    triggers = marked_triggers(RUNS + 1, FIRST_DAY)
    topic = service.setting("topic_triggers")
    await produce(kafka_bootstrap, topic, triggers[:RUNS])
    conn = await asyncpg.connect(database_url)
    try:
        await succeeded(conn, 2, 60)
        private_redis.stop()
        await eventually(
            lambda: readiness(service),
            lambda r: r[1].get("redis") == "unavailable",
            15,
            "readiness to notice",
        )
        status, _ = await readiness(service)
        assert status == 200  # a side system: not required to be ready
        await succeeded(conn, RUNS, 90)
        await check_marked(conn, marks, RUNS)
        private_redis.start()
        back = time.monotonic()
        await produce(kafka_bootstrap, topic, triggers[RUNS:])  # one more run, after Redis
        last = "SELECT run_id FROM runs WHERE batch_date = $1 AND state = 'success'"
        day = FIRST_DAY + timedelta(days=RUNS)
        run_id = await eventually(
            lambda: conn.fetchval(last, day),
            bool,
            60,
            "the last run",
        )
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(private_redis.url, decode_responses=True)
    try:
        key = f"{service.setting('redis_key_prefix')}:run:{run_id}"
        await eventually(lambda: client.hget(key, "state"), lambda s: s == "success", 30, "live")
    finally:
        await client.aclose()
    assert service.alive
    report("redis outage", runs=RUNS + 1, live_state_back_after=f"{time.monotonic() - back:.1f} s")
