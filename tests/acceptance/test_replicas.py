"""Two service processes against one database and one set of topics: the result of one."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from tests.acceptance.diamond import (
    PIPELINE,
    check_database,
    check_status_topic,
    triggers,
    unfinished,
)
from tests.conftest import service_environment
from tests.support import ServiceProcess, eventually, produce

RUNS = 200


async def test_two_replicas_share_the_work_and_do_it_once(
    tmp_path: Path, database_url: str, kafka_bootstrap: str, topic_prefix: str, redis_prefix: str
) -> None:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "diamond.yaml").write_text(PIPELINE)
    env = service_environment(
        database_url,
        kafka_bootstrap,
        topic_prefix,
        redis_prefix,
        pipelines_dir=str(pipelines),
        task_log_dir=str(tmp_path / "logs"),
        max_parallel_tasks="4",
        executor_poll_interval_seconds="0.1",
    )
    replicas = [ServiceProcess(env, tmp_path / f"replica-{i}.log") for i in range(2)]
    for replica in replicas:
        replica.start()
    conn = await asyncpg.connect(database_url)
    try:
        for replica in replicas:
            await replica.wait_started()
        await produce(
            kafka_bootstrap,
            env["TRIBUTARY_TOPIC_TRIGGERS"],
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
        await check_status_topic(conn, kafka_bootstrap, env["TRIBUTARY_TOPIC_STATUS"])
        workers = await conn.fetch(
            "SELECT worker_id, count(*) AS n FROM task_attempts GROUP BY worker_id"
        )
        assert len(workers) == 2, "both replicas ran tasks"
        # Both replicas decided transitions (the log names who made each change).
        actors = await conn.fetch("SELECT DISTINCT actor FROM transitions")
        assert len({r["actor"] for r in actors}) >= 2
    finally:
        await conn.close()
        for replica in replicas:
            assert replica.stop() == 0, replica.log_text()[-3000:]
