"""Remote workers under backlog: three remote tasks at once for one worker slot, with a lease
shorter than the wait. Each attempt's lease starts when the worker picks it up, so none is
judged lost while it waits in the topic, and the one slot runs them one after another."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import asyncpg
import pytest

from tests.chaos.rig import report
from tests.support import RunService, only_run_ended, produce, requested

pytestmark = pytest.mark.chaos


async def test_requests_waiting_for_a_busy_worker_are_not_leased_meanwhile(
    run_service: RunService, database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    service = await run_service("backlog", lease_ttl_seconds="2", timer_poll_interval_seconds="0.2")
    worker = service.another(
        "worker",
        command="worker",
        instance_id="the-worker",
        max_parallel_tasks=1,
        attempt_state_dir=tmp_path / "worker-attempts",
    )
    worker.start()
    conn = await asyncpg.connect(database_url)
    try:
        await worker.wait_started()
        request = requested("backlog", "2026-11-21")
        await produce(
            kafka_bootstrap, service.setting("topic_triggers"), [(b"backlog", request.to_bytes())]
        )
        sent = time.monotonic()
        final = await only_run_ended(conn)
        ended = time.monotonic() - sent
        assert final == "success"
        attempts = await conn.fetch(
            "SELECT task_id, attempt, state, started_at, ended_at FROM task_attempts "
            "ORDER BY started_at"
        )
        assert [(a["attempt"], a["state"]) for a in attempts] == [(1, "success")] * 3
        for before, after in itertools.pairwise(attempts):
            assert after["started_at"] >= before["ended_at"], "one slot: one at a time"
        assert await conn.fetchval("SELECT sum(lost_attempts) FROM task_instances") == 0
        report(
            "worker backlog",
            remote_tasks=3,
            worker_slots=1,
            lease="2 s",
            attempts=len(attempts),
            lost=0,
            run_succeeded_after=f"{ended:.1f} s",
        )
    finally:
        await conn.close()
        worker.stop()
