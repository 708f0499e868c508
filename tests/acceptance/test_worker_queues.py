"""Worker queues: a task's queue routes it to the workers started with ``--queue NAME`` (their
own requests topic and group), and only to them; a task without one goes to the other
workers; a queue's worker starts an attempt only when its node has the room the task holds."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from tests.support import RunService, only_run_ended, produce, requested


async def test_each_queue_runs_on_its_own_workers_within_their_resources(
    run_service: RunService, database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    service = await run_service("queued_work")
    gpu = service.another(
        "gpu-worker",
        command="worker --queue gpu",
        instance_id="gpu-worker",
        node_cpu_cores="2",
        attempt_state_dir=tmp_path / "gpu-attempts",
    )
    plain = service.another(
        "plain-worker",
        command="worker",
        instance_id="plain-worker",
        attempt_state_dir=tmp_path / "plain-attempts",
    )
    for worker in (gpu, plain):
        worker.start()
    for worker in (gpu, plain):
        await worker.wait_started()
    [started] = [e for e in gpu.log_events() if e.get("event") == "worker.started"]
    assert started["queue"] == "gpu"
    assert started["requests_topic"] == service.setting("topic_requests") + ".gpu"

    request = requested("queued_work", "2026-11-21")
    await produce(kafka_bootstrap, service.setting("topic_triggers"), [(None, request.to_bytes())])
    conn = await asyncpg.connect(database_url)
    try:
        assert await only_run_ended(conn) == "success"
        ran = await conn.fetch(
            "SELECT task_id, worker_id, started_at, ended_at FROM task_attempts ORDER BY task_id"
        )
        assert [(r["task_id"], r["worker_id"]) for r in ran] == [
            ("report", "plain-worker"),
            ("train_a", "gpu-worker"),
            ("train_b", "gpu-worker"),
        ]
        a, b = ran[1], ran[2]
        assert a["ended_at"] <= b["started_at"] or b["ended_at"] <= a["started_at"]  # 2 + 2 > 2
    finally:
        await conn.close()
