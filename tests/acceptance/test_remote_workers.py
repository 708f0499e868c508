"""Remote workers over Kafka: a worker killed mid-task, and the task finishes on another."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from service.bus.envelope import RUN_REQUESTED, new_event
from tests.conftest import service_environment
from tests.support import ServiceProcess, eventually, produce

PIPELINE = """\
id: remote_job
tasks:
  - id: crunch
    executor: remote
    command: [sh, -c, "sleep 2; echo crunched"]
    retry: {max_attempts: 3, backoff: {base: 0.1s, max: 0.5s}}
  - id: report
    requires: [crunch]
    command: [sh, -c, "echo reported"]
"""


async def test_a_worker_killed_mid_task_hands_it_to_another(
    tmp_path: Path, database_url: str, kafka_bootstrap: str, topic_prefix: str, redis_prefix: str
) -> None:
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "remote.yaml").write_text(PIPELINE)
    env = service_environment(
        database_url,
        kafka_bootstrap,
        topic_prefix,
        redis_prefix,
        pipelines_dir=str(pipelines),
        task_log_dir=str(tmp_path / "logs"),
        topic_requests=f"{topic_prefix}.requests",
        kafka_worker_group=f"{topic_prefix}-workers",
        lease_ttl_seconds="2",
        timer_poll_interval_seconds="0.2",
    )
    service = ServiceProcess(env, tmp_path / "service.log")
    workers = [
        ServiceProcess(
            {**env, "TRIBUTARY_INSTANCE_ID": f"worker-{i}"},
            tmp_path / f"worker-{i}.log",
            command="worker",
        )
        for i in range(2)
    ]
    conn = await asyncpg.connect(database_url)
    try:
        for process in [service, *workers]:
            process.start()
        for process in [service, *workers]:
            await process.wait_started()
        request = new_event(
            RUN_REQUESTED, "urn:test", {"pipeline_id": "remote_job", "batch_date": "2026-11-21"}
        )
        await produce(
            kafka_bootstrap, env["TRIBUTARY_TOPIC_TRIGGERS"], [(b"remote_job", request.to_bytes())]
        )

        async def busy() -> list[ServiceProcess]:
            return [w for w in workers if '"attempt.started"' in w.log_text()]

        [victim] = await eventually(busy, lambda found: len(found) == 1, 30, "a worker to start")
        victim.kill()  # SIGKILL mid-task: no completion, no more heartbeats
        survivor = next(w for w in workers if w is not victim)

        await eventually(
            lambda: conn.fetchval("SELECT state FROM runs"),
            lambda state: state in ("success", "failed"),
            60,
            "the run to end",
        )
        assert await conn.fetchval("SELECT state FROM runs") == "success"
        crunch = await conn.fetch(
            "SELECT attempt, state, worker_id FROM task_attempts WHERE task_id = 'crunch' "
            "ORDER BY attempt"
        )
        assert crunch[-1]["state"] == "success"
        assert crunch[-1]["worker_id"] == survivor.environment["TRIBUTARY_INSTANCE_ID"]
        assert '"attempt.started"' in survivor.log_text()
        # The report ran locally, in the service, after the remote task.
        report = await conn.fetchrow(
            "SELECT state, worker_id FROM task_instances WHERE task_id = 'report'"
        )
        assert report["state"] == "success"
        assert not report["worker_id"].startswith("worker-")
    finally:
        await conn.close()
        for process in [service, *workers]:
            if process.alive:
                process.stop()
