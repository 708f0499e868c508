"""The local executor with real subprocesses and the real database: what each attempt becomes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from service.bus.dead_letter import DeadLetters
from service.bus.envelope import DATASET_READY, RUN_REQUESTED, CloudEvent, new_event
from service.coordinator import Coordinator, StatusTopic
from service.executor.local import CompletionBatcher, LocalExecutor
from service.pipelines import PipelineRegistry
from service.store import connect
from tests.support import eventually

PIPELINE = """\
id: hard
defaults:
  env: {{MARKS: "{marks}"}}
tasks:
  - id: stubborn
    command: [sh, -c, "trap '' TERM; while true; do sleep 0.05; done"]
    timeout: 0.5s
    grace_period: 0.3s
    retry: {{max_attempts: 2, backoff: {{base: 0.1s, max: 0.1s}}, jitter: 0}}
    rollback: [sh, -c, 'echo "rolled back {{attempt}}" >> "$MARKS/rollback"']
  - id: tidy
    cleanup: [sh, -c, 'echo cleaned >> "$MARKS/cleanup"']
    command: [sh, -c, 'test -f "$MARKS/cleanup"']
  - id: bad_cleanup
    cleanup: [sh, -c, "exit 1"]
    command: [sh, -c, 'touch "$MARKS/must-not-exist"']
  - id: nothing_to_do
    command: [sh, -c, "exit 99"]
    exit_codes: {{skip: [99]}}
  - id: hopeless
    command: [sh, -c, "exit 2"]
    exit_codes: {{fatal: [2]}}
    retry: {{max_attempts: 3}}
"""


CACHED = """\
id: cached
tasks:
  - id: expensive
    cache: true
    inputs: [{{uri: "pg://w/src", dataset: src, partition: "{{batch_date}}"}}]
    command: [sh, -c, 'echo ran >> "{marks}/expensive"']
"""


@dataclass
class Rig:
    coordinator: Coordinator
    executor: LocalExecutor
    completions: CompletionBatcher


@pytest.fixture
async def rig(database_url: str, kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[Rig]:
    marks = tmp_path / "marks"
    marks.mkdir()
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "hard.yaml").write_text(PIPELINE.format(marks=marks))
    (pipelines / "cached.yaml").write_text(CACHED.format(marks=marks))
    store = await connect(database_url, 4)
    registry = PipelineRegistry(store)
    assert (await registry.load(pipelines)).problems == []
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    coordinator = Coordinator(store, registry, StatusTopic("status", "urn:test"), actor="test")
    completions = CompletionBatcher(coordinator, DeadLetters(producer, "dead"), "completions")
    executor = LocalExecutor(
        coordinator,
        registry,
        completions,
        "w1",
        "urn:test",
        tmp_path / "logs",
        max_parallel=8,
        poll_interval=0.05,
        lease_seconds=30,
    )
    loops = [asyncio.create_task(executor.run()), asyncio.create_task(completions.run())]
    yield Rig(coordinator, executor, completions)
    await executor.stop(drain_timeout=5)
    completions.close()
    await asyncio.wait_for(loops[1], 10)
    loops[0].cancel()
    await producer.stop()
    await store.close()


async def test_each_attempt_ends_as_its_spec_says(
    rig: Rig, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    await rig.coordinator.apply(
        [new_event(RUN_REQUESTED, "urn:test", {"pipeline_id": "hard", "batch_date": "2026-11-21"})]
    )

    async def fire_retries() -> str:
        await rig.coordinator.fire_due_retries(10)  # what the timer loop does
        state: str = await pg.fetchval("SELECT state FROM runs")
        return state

    await eventually(fire_retries, lambda s: s in ("success", "failed"), 30, "the run to end")
    tasks = {r["task_id"]: r for r in await pg.fetch("SELECT * FROM task_instances")}
    assert {t: r["state"] for t, r in tasks.items()} == {
        "stubborn": "timed_out",
        "tidy": "success",
        "bad_cleanup": "failed",
        "nothing_to_do": "skipped",
        "hopeless": "failed",
    }
    marks = tmp_path / "marks"
    # Timed out twice (two attempts), rolled back after each, killed despite trapping SIGTERM.
    assert tasks["stubborn"]["attempt"] == 2
    assert (marks / "rollback").read_text().splitlines() == ["rolled back 1", "rolled back 2"]
    assert "timed out" in tasks["stubborn"]["error_snippet"]
    assert (marks / "cleanup").read_text() == "cleaned\n"
    assert not (marks / "must-not-exist").exists()
    assert tasks["hopeless"]["attempt"] == 1  # a fatal code is never retried
    assert tasks["hopeless"]["exit_code"] == 2
    reasons = {
        r["task_id"]: r["reason"]
        for r in await pg.fetch(
            "SELECT task_id, reason FROM transitions WHERE to_state IN ('failed', 'timed_out')"
        )
    }
    assert "cleanup failed (exit code 1): the command did not run" in reasons["bad_cleanup"]
    assert "timed out after 0.5s; rollback done" in reasons["stubborn"]


async def test_shutdown_interrupts_what_runs_and_reports_it_retryable(
    rig: Rig, pg: asyncpg.Connection
) -> None:
    await rig.coordinator.apply(
        [new_event(RUN_REQUESTED, "urn:test", {"pipeline_id": "hard", "batch_date": "2026-11-22"})]
    )
    await eventually(
        lambda: pg.fetchval(
            "SELECT count(*) FROM task_instances WHERE task_id = 'stubborn' AND state = 'running'"
        ),
        lambda n: n == 1,
        10,
        "stubborn to run",
    )
    await rig.executor.stop(drain_timeout=0.1)
    rig.completions.close()
    await eventually(
        lambda: pg.fetchval("SELECT state FROM task_instances WHERE task_id = 'stubborn'"),
        lambda s: s != "running",
        10,
        "the interrupted attempt to be reported",
    )
    reason = await pg.fetchval(
        "SELECT reason FROM transitions WHERE task_id = 'stubborn' ORDER BY id DESC LIMIT 1"
    )
    # Interrupted after the 0.1 s drain, well before its 0.5 s timeout: failed, retryable.
    assert "interrupted: the service stopped" in reason
    assert (
        await pg.fetchval("SELECT state FROM task_instances WHERE task_id = 'stubborn'")
        == "up_for_retry"
    )


async def test_a_cached_task_runs_again_only_when_its_inputs_change(
    rig: Rig, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    ran = tmp_path / "marks" / "expensive"

    async def run_once(*extra: CloudEvent) -> str:
        request = new_event(
            RUN_REQUESTED, "urn:test", {"pipeline_id": "cached", "batch_date": "2026-11-21"}
        )
        await rig.coordinator.apply([*extra, request])
        await eventually(
            lambda: pg.fetchval(
                "SELECT count(*) FROM runs WHERE state NOT IN ('success', 'failed')"
            ),
            lambda n: n == 0,
            20,
            "the run to end",
        )
        state: str = await pg.fetchval(
            "SELECT t.state FROM task_instances t JOIN runs r USING (run_id) "
            "ORDER BY r.created_at DESC LIMIT 1"
        )
        return state

    v1 = new_event(
        DATASET_READY, "urn:test", {"dataset": "src", "partition": "2026-11-21", "version": "v1"}
    )
    assert await run_once(v1) == "success"
    assert await run_once() == "skipped"  # same spec, command and input version
    reason = await pg.fetchval("SELECT reason FROM transitions WHERE to_state = 'skipped'")
    assert "cache_hit" in reason
    v2 = new_event(
        DATASET_READY, "urn:test", {"dataset": "src", "partition": "2026-11-21", "version": "v2"}
    )
    assert await run_once(v2) == "success"  # a new version of the input
    assert ran.read_text().splitlines() == ["ran", "ran"]
