"""The timer loop fires each retry at its computed time: not before, and promptly after."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from service.bus.envelope import RUN_REQUESTED, TASK_COMPLETED, new_event
from service.coordinator import Coordinator, StatusTopic
from service.pipelines import PipelineRegistry
from service.store import connect
from service.timers import TimerLoop
from tests.support import eventually

PIPELINE = """\
id: flaky
tasks:
  - id: a
    command: ["false"]
    retry: {max_attempts: 3, backoff: {base: 0.5s, factor: 2, max: 5s}, jitter: 0}
"""


async def test_retries_are_queued_at_their_backoff_times(
    database_url: str, tmp_path: Path, pg: asyncpg.Connection
) -> None:
    (tmp_path / "flaky.yaml").write_text(PIPELINE)
    store = await connect(database_url, 3)
    registry = PipelineRegistry(store)
    await registry.load(tmp_path)
    coordinator = Coordinator(store, registry, StatusTopic("s", "urn:test"), actor="test")
    timers = TimerLoop(coordinator, store, poll_interval=5.0)  # it must not rely on polling
    loop = asyncio.create_task(timers.run())
    try:
        await coordinator.apply(
            [
                new_event(
                    RUN_REQUESTED, "urn:test", {"pipeline_id": "flaky", "batch_date": "2026-11-21"}
                )
            ]
        )
        for attempt, backoff in ((1, 0.5), (2, 1.0)):
            [claim] = await coordinator.claim("w", 1, 30)
            assert claim.attempt == attempt
            await coordinator.apply(
                [
                    new_event(
                        TASK_COMPLETED,
                        "urn:test",
                        {
                            "run_id": claim.run_id,
                            "task_id": "a",
                            "attempt": attempt,
                            "outcome": "failed",
                            "exit_code": 1,
                        },
                    )
                ]
            )
            timers.wake()  # what the service does after a commit that scheduled a retry
            retry_at = await pg.fetchval("SELECT retry_at FROM task_instances")
            failed_at = await pg.fetchval(
                "SELECT at FROM transitions WHERE to_state = 'up_for_retry' ORDER BY id DESC"
            )
            assert abs((retry_at - failed_at).total_seconds() - backoff) < 0.05
            await eventually(
                lambda: pg.fetchval("SELECT state FROM task_instances"),
                lambda s: s == "queued",
                10,
                f"retry {attempt}",
            )
            queued_at = await pg.fetchval(
                "SELECT at FROM transitions WHERE to_state = 'queued' ORDER BY id DESC"
            )
            late = (queued_at - retry_at).total_seconds()
            assert 0 <= late < 0.3, f"retry {attempt} fired {late:.3f} s after its time"
    finally:
        loop.cancel()
        await store.close()
