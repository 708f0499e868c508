"""Remote workers over Kafka: a worker killed mid-task, and the task finishes on another; a
cancelled run's attempt stopped and rolled back on the worker that runs it."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import asyncpg

from service.events import RunCommand, new_event
from tests.support import (
    RunService,
    ServiceProcess,
    eventually,
    group_gone,
    only_run_ended,
    produce,
    requested,
    settled,
)


async def test_a_worker_killed_mid_task_hands_it_to_another(
    run_service: RunService, database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    service = await run_service(
        "remote_job", lease_ttl_seconds="2", timer_poll_interval_seconds="0.2"
    )
    workers = [
        service.another(
            f"worker-{i}",
            command="worker",
            instance_id=f"worker-{i}",
            attempt_state_dir=tmp_path / f"worker-{i}-attempts",
        )
        for i in range(2)
    ]
    conn = await asyncpg.connect(database_url)
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            await worker.wait_started()
        request = requested("remote_job", "2026-11-21")
        await produce(
            kafka_bootstrap,
            service.setting("topic_triggers"),
            [(b"remote_job", request.to_bytes())],
        )

        async def busy() -> list[ServiceProcess]:
            return [w for w in workers if '"request.taken"' in w.log_text()]

        [victim] = await eventually(busy, lambda found: len(found) == 1, 30, "a worker to start")
        victim.kill()  # SIGKILL mid-task: no completion, no more heartbeats
        survivor = next(w for w in workers if w is not victim)

        assert await only_run_ended(conn) == "success"
        crunch = await conn.fetch(
            "SELECT attempt, state, worker_id FROM task_attempts WHERE task_id = 'crunch' "
            "ORDER BY attempt"
        )
        assert crunch[-1]["state"] == "success"
        assert crunch[-1]["worker_id"] == survivor.setting("instance_id")
        assert '"request.taken"' in survivor.log_text()
        # The report ran locally, in the service, after the remote task.
        report = await conn.fetchrow(
            "SELECT state, worker_id FROM task_instances WHERE task_id = 'report'"
        )
        assert report["state"] == "success"
        assert not report["worker_id"].startswith("worker-")
    finally:
        await conn.close()
        for worker in workers:
            if worker.alive:
                worker.stop()


async def test_cancelling_a_run_stops_its_attempt_on_a_remote_worker(
    run_service: RunService, database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    service = await run_service("remote_slow")
    worker = service.another(
        "worker-0", command="worker", instance_id="worker-0", attempt_state_dir=tmp_path / "w0"
    )
    worker.start()
    await worker.wait_started()
    request = requested("remote_slow", "2026-11-21", params={"marks": str(marks)})
    topic = service.setting("topic_triggers")
    await produce(kafka_bootstrap, topic, [(b"remote_slow", request.to_bytes())])
    pid_file = marks / "crunch.pid"
    await eventually(lambda: settled(pid_file.exists()), bool, 30, "the remote task to start")
    conn = await asyncpg.connect(database_url)
    try:
        run_id = await conn.fetchval("SELECT run_id FROM runs")
    finally:
        await conn.close()
    cancel = new_event(RunCommand(run_id=run_id, command="cancel", requested_by="ops"), "urn:test")
    await produce(kafka_bootstrap, topic, [(run_id.encode(), cancel.to_bytes())])
    leader = int(pid_file.read_text())

    await eventually(lambda: group_gone(leader), bool, 30, "the worker to stop the attempt")
    await eventually(lambda: settled((marks / "rolled").exists()), bool, 30, "its rollback")
    assert '"attempt.cancelled"' in worker.log_text()


async def test_a_remote_attempts_log_is_served_by_the_service(
    run_service: RunService, database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    service = await run_service("remote_job")
    worker = service.another(
        "worker-0",
        command="worker",
        instance_id="worker-0",
        attempt_state_dir=tmp_path / "w0",
        task_log_dir=tmp_path / "worker-logs",  # its own disk: the log must travel
    )
    worker.start()
    await worker.wait_started()
    request = requested("remote_job", "2026-11-21")
    await produce(kafka_bootstrap, service.setting("topic_triggers"), [(b"rj", request.to_bytes())])
    conn = await asyncpg.connect(database_url)
    try:
        await eventually(
            lambda: conn.fetchval("SELECT state FROM runs"),
            lambda state: state == "success",
            60,
            "the run to succeed",
        )
        run_id = await conn.fetchval("SELECT run_id FROM runs")
    finally:
        await conn.close()
    url = f"http://127.0.0.1:{service.http_port()}/api/runs/{run_id}/tasks/crunch/log"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200, await response.text()
        assert await response.text() == "crunched\n"  # written on the worker, served here
