"""PostgreSQL stopped mid-run and started again: the service waits it out without a restart,
says so, and every run succeeds with nothing lost or run twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest

from tests.chaos.rig import (
    Deploy,
    PrivatePostgres,
    check_marked,
    marked_triggers,
    readiness,
    report,
    succeeded,
)
from tests.support import eventually, produce

pytestmark = pytest.mark.chaos
RUNS = 30
OUTAGE = 8.0  # seconds the database is down
LOST = "SELECT run_id, task_id FROM task_instances WHERE lost_attempts > 0"


async def test_a_database_outage_is_waited_out(
    private_postgres: PrivatePostgres, kafka_bootstrap: str, marks: Path, deploy: Deploy
) -> None:
    service = await deploy(
        ["marked"],
        database_url=private_postgres.url,
        kafka=kafka_bootstrap,
        lease_ttl_seconds=10,
        timer_poll_interval_seconds=0.2,
        max_parallel_tasks=4,
    )
    triggers = marked_triggers(RUNS)
    await produce(kafka_bootstrap, service.setting("topic_triggers"), triggers)
    conn = await asyncpg.connect(private_postgres.url)
    await succeeded(conn, 3, 60)
    await conn.close()
    private_postgres.stop()
    _, checks = await eventually(
        lambda: readiness(service), lambda r: r[0] == 503, 15, "readiness to say so"
    )
    assert str(checks["postgres"]).startswith("unavailable"), checks
    await asyncio.sleep(OUTAGE)  # the outage itself
    private_postgres.start()
    back = time.monotonic()
    await eventually(lambda: readiness(service), lambda r: r[0] == 200, 30, "ready again")
    ready_after = time.monotonic() - back
    conn = await asyncpg.connect(private_postgres.url)
    try:
        await succeeded(conn, RUNS, 90)
        all_done = time.monotonic() - back
        await check_marked(conn, marks, RUNS)
        lost = await conn.fetch(LOST)
        assert not lost, f"attempts lost to an outage shorter than a lease: {lost}"
    finally:
        await conn.close()
    assert service.alive, "the service must wait the outage out, not exit"
    assert not service.events("service.task_died")
    assert service.events("loop.failing")
    assert service.events("loop.recovered")
    report(
        "database outage",
        runs=RUNS,
        outage=f"{OUTAGE:g} s",
        all_succeeded_after=f"{all_done:.1f} s",
        ready_after=f"{ready_after:.1f} s",
    )
