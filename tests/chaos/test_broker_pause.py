"""The broker paused (SIGSTOP) and resumed: readiness asks it for real and says so, and the
service goes on without a restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest

from tests.chaos.rig import (
    Deploy,
    PrivateBroker,
    check_marked,
    marked_triggers,
    readiness,
    report,
    succeeded,
)
from tests.support import eventually, produce

pytestmark = pytest.mark.chaos
RUNS = 30
PAUSE = 6.0  # seconds the broker is frozen


async def test_a_paused_broker_is_waited_out_and_readiness_says_so(
    database_url: str, private_broker: PrivateBroker, marks: Path, deploy: Deploy
) -> None:
    service = await deploy(
        ["marked"],
        database_url=database_url,
        kafka=private_broker.bootstrap,
        max_parallel_tasks=4,
    )
    triggers = marked_triggers(RUNS)
    await produce(private_broker.bootstrap, service.setting("topic_triggers"), triggers[:15])
    conn = await asyncpg.connect(database_url)
    try:
        await succeeded(conn, 3, 60)
        private_broker.pause()
        _, checks = await eventually(
            lambda: readiness(service), lambda r: r[0] == 503, 15, "readiness to say so"
        )
        assert str(checks["kafka"]).startswith("unavailable"), checks
        assert checks["postgres"] == "ok"
        await asyncio.sleep(PAUSE)  # the pause itself
        private_broker.resume()
        back = time.monotonic()
        await eventually(lambda: readiness(service), lambda r: r[0] == 200, 30, "ready again")
        ready_after = time.monotonic() - back
        await produce(private_broker.bootstrap, service.setting("topic_triggers"), triggers[15:])
        await succeeded(conn, RUNS, 90)
        all_done = time.monotonic() - back
        await check_marked(conn, marks, RUNS)
        backlog = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
        await eventually(lambda: conn.fetchval(backlog), lambda n: n == 0, 30, "the outbox sent")
    finally:
        await conn.close()
    assert service.alive
    assert not service.events("service.task_died")
    report(
        "broker pause",
        runs=RUNS,
        pause=f"{PAUSE:g} s",
        all_succeeded_after=f"{all_done:.1f} s",
        ready_after=f"{ready_after:.1f} s",
    )
