"""Two service processes against one database and one set of topics: the result of one."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from tests.acceptance.diamond import check_database, check_status_topic, triggers, unfinished
from tests.support import RunService, eventually, produce

RUNS = 200


async def test_two_replicas_share_the_work_and_do_it_once(
    run_service: RunService, database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    locks = tmp_path / "locks"
    locks.mkdir()
    first = await run_service(
        "diamond",
        env={"DIAMOND_LOCKS": str(locks)},
        max_parallel_tasks="4",
        executor_poll_interval_seconds="0.1",
    )
    second = first.another("replica-2", attempt_state_dir=tmp_path / "attempts-2")
    second.start()
    conn = await asyncpg.connect(database_url)
    try:
        await second.wait_started()
        await produce(
            kafka_bootstrap,
            first.setting("topic_triggers"),
            [(b"crash_ready", e.to_bytes()) for e in triggers(RUNS)],
        )
        await eventually(lambda: unfinished(conn, RUNS), lambda n: n == 0, 90, "every run to end")
        await eventually(
            lambda: conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"),
            lambda n: n == 0,
            30,
            "the outbox to drain",
        )
        await check_database(conn, RUNS, "two replicas")
        assert not (locks / "overlaps").exists()
        await check_status_topic(conn, kafka_bootstrap, first.setting("topic_status"))
        workers = await conn.fetch(
            "SELECT worker_id, count(*) AS n FROM task_attempts GROUP BY worker_id"
        )
        assert len(workers) == 2, "both replicas ran tasks"
        # Both replicas decided transitions (the log names who made each change).
        actors = await conn.fetch("SELECT DISTINCT actor FROM transitions")
        assert len({r["actor"] for r in actors}) >= 2
    finally:
        await conn.close()
        for replica in (first, second):
            assert replica.stop() == 0, replica.log_text()[-3000:]
