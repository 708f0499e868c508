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
    ended_runs,
    marked_triggers,
    readiness,
    report,
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
    triggers = [(b"marked_ready", e.to_bytes()) for e in marked_triggers(RUNS)]
    await produce(private_broker.bootstrap, service.setting("topic_triggers"), triggers[:15])
    conn = await asyncpg.connect(database_url)
    try:
        await eventually(
            lambda: ended_runs(conn), lambda r: r.get("success", 0) >= 3, 60, "some progress"
        )
        private_broker.pause()
        _, checks = await eventually(
            lambda: readiness(service), lambda r: r[0] == 503, 15, "readiness to say so"
        )
        assert str(checks["kafka"]).startswith("unavailable"), checks
        assert checks["postgres"] == "ok"
        await asyncio.sleep(PAUSE)  # the pause itself
        private_broker.resume()
        back = time.monotonic()
        await produce(private_broker.bootstrap, service.setting("topic_triggers"), triggers[15:])
        await eventually(
            lambda: ended_runs(conn),
            lambda runs: runs.get("success", 0) == RUNS or "failed" in runs,
            90,
            "every run to succeed",
        )
        all_done = time.monotonic() - back
        await check_marked(conn, marks, RUNS)
        ready_after = time.monotonic() - back
        await eventually(lambda: readiness(service), lambda r: r[0] == 200, 30, "ready again")
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
        ready_by=f"{ready_after:.1f} s",
    )
