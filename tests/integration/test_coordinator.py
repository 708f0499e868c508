"""The coordinator against the real database: one transaction per batch, exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from service.bus.envelope import DATASET_READY, TASK_COMPLETED, CloudEvent, new_event, validate_data
from service.coordinator import Coordinator, StatusTopic, apply_reliably
from service.pipelines import PipelineRegistry
from service.store import Store, connect

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"
LEASE = 30.0  # seconds
TASKS = ["ingest", "clean", "join_customers", "aggregate", "publish", "notify", "tidy_staging"]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await connect(database_url, 5)
    yield store
    await store.close()


@pytest.fixture
async def coordinator(store: Store) -> Coordinator:
    registry = PipelineRegistry(store)
    assert (await registry.load(EXAMPLES)).problems == []
    return Coordinator(store, registry, StatusTopic("status", "urn:test"), actor="test")


def ready(partition: str = "2026-11-21", **data: Any) -> CloudEvent:
    return new_event(
        DATASET_READY, "urn:up", {"dataset": "orders_raw", "partition": partition, **data}
    )


def completed(
    run_id: str, task_id: str, attempt: int, outcome: str = "success", retryable: bool = True
) -> CloudEvent:
    data = {
        "run_id": run_id,
        "task_id": task_id,
        "attempt": attempt,
        "outcome": outcome,
        "exit_code": 0 if outcome == "success" else 1,
        "retryable": retryable,
    }
    return new_event(TASK_COMPLETED, "urn:worker", data)


async def states(pg: asyncpg.Connection) -> dict[str, str]:
    rows = await pg.fetch("SELECT task_id, state FROM task_instances")
    return {r["task_id"]: r["state"] for r in rows}


async def test_a_partition_makes_one_run_whatever_is_redelivered(
    coordinator: Coordinator, pg: asyncpg.Connection
) -> None:
    event = ready()
    first = await coordinator.apply([event])
    assert (first.runs_created, first.tasks_queued, first.outbox_written) == (1, 1, 3)
    again = await coordinator.apply([event, ready()])
    assert again.duplicates == 1
    assert again.runs_created == 0
    assert await pg.fetchval("SELECT count(*) FROM runs") == 1
    assert await states(pg) == {task: "queued" if task == "ingest" else "pending" for task in TASKS}
    for row in await pg.fetch("SELECT payload FROM outbox ORDER BY id"):
        body = orjson.loads(row["payload"])
        validate_data(body["type"], body["data"])


async def test_claim_complete_and_advance(coordinator: Coordinator, pg: asyncpg.Connection) -> None:
    await coordinator.apply([ready()])
    [claim] = await coordinator.claim("w1", 10, LEASE)
    assert (claim.task_id, claim.attempt) == ("ingest", 1)
    assert await coordinator.claim("w1", 10, LEASE) == []
    outcome = await coordinator.apply([completed(claim.run_id, "ingest", 1)])
    assert outcome.tasks_queued == 1
    now = await states(pg)
    assert (now["ingest"], now["clean"], now["join_customers"]) == ("success", "queued", "pending")
    attempt = await pg.fetchrow("SELECT * FROM task_attempts")
    assert (attempt["task_id"], attempt["state"], attempt["exit_code"]) == ("ingest", "success", 0)


async def test_stale_and_unknown_completions_are_ignored(
    coordinator: Coordinator, pg: asyncpg.Connection
) -> None:
    await coordinator.apply([ready()])
    [claim] = await coordinator.claim("w1", 1, LEASE)
    outcome = await coordinator.apply(
        [completed(claim.run_id, "ingest", 2), completed("no-such-run", "ingest", 1)]
    )
    assert (outcome.applied, outcome.ignored) == (0, 2)
    assert (await states(pg))["ingest"] == "running"


async def test_a_failure_fails_downstream_but_all_done_tasks_still_run(
    coordinator: Coordinator, pg: asyncpg.Connection
) -> None:
    await coordinator.apply([ready()])
    [claim] = await coordinator.claim("w1", 1, LEASE)
    await coordinator.apply([completed(claim.run_id, "ingest", 1, "failed", retryable=False)])
    now = await states(pg)
    assert [now[t] for t in ("clean", "join_customers", "aggregate", "publish")] == [
        "upstream_failed"
    ] * 4
    assert (now["notify"], now["tidy_staging"]) == ("queued", "queued")
    assert await pg.fetchval("SELECT state FROM runs") == "running"
    finishers = await coordinator.claim("w1", 5, LEASE)
    await coordinator.apply([completed(c.run_id, c.task_id, c.attempt) for c in finishers])
    assert await pg.fetchval("SELECT state FROM runs") == "failed"
    # A late completion after the run ended changes nothing.
    late = await coordinator.apply([completed(claim.run_id, "ingest", 1)])
    assert late.ignored == 1


async def test_concurrent_claimers_never_share_a_task(
    coordinator: Coordinator, pg: asyncpg.Connection
) -> None:
    await coordinator.apply([ready(f"2026-01-{day:02d}") for day in range(1, 21)])
    claimed: list[tuple[str, str]] = []
    for _ in range(5):  # as executors do: claim again while there is work
        claims = await asyncio.gather(*(coordinator.claim(f"w{i}", 3, LEASE) for i in range(8)))
        claimed += [(c.run_id, c.task_id) for batch in claims for c in batch]
    assert len(claimed) == len(set(claimed)) == 20  # every task, none twice
    assert await pg.fetchval("SELECT count(*) FROM task_instances WHERE state = 'running'") == 20


async def test_an_event_the_database_refuses_is_isolated(
    coordinator: Coordinator, pg: asyncpg.Connection
) -> None:
    # Valid JSON and valid against the schema, but PostgreSQL text cannot hold NUL.
    poison = ready("2026-11-22", producer="bad\u0000producer")
    rejected = await apply_reliably(coordinator, [ready("2026-11-21"), poison, ready("2026-11-23")])
    assert [(event.id, "refused" in reason) for event, reason in rejected] == [(poison.id, True)]
    batch_dates = await pg.fetch("SELECT batch_date::text FROM runs ORDER BY batch_date")
    assert [r["batch_date"] for r in batch_dates] == ["2026-11-21", "2026-11-23"]


async def test_a_failed_attempt_is_retried_when_its_time_comes(
    coordinator: Coordinator, pg: asyncpg.Connection
) -> None:
    await coordinator.apply([ready()])
    [claim] = await coordinator.claim("w1", 1, LEASE)
    outcome = await coordinator.apply([completed(claim.run_id, "ingest", 1, "failed")])
    assert outcome.retries_scheduled == 1
    row = await pg.fetchrow(
        "SELECT state, retry_at, now() AS now FROM task_instances WHERE task_id = 'ingest'"
    )
    assert row["state"] == "up_for_retry"
    # orders_daily: backoff base 10s, jitter 20% -> the first retry 8 to 12 s later.
    assert 7.5 <= (row["retry_at"] - row["now"]).total_seconds() <= 12.5
    assert await coordinator.fire_due_retries(10) == 0  # not due yet
    await pg.execute("UPDATE task_instances SET retry_at = now() WHERE task_id = 'ingest'")
    assert await coordinator.fire_due_retries(10) == 1
    assert (await states(pg))["ingest"] == "queued"
    [again] = await coordinator.claim("w2", 1, LEASE)
    assert (again.task_id, again.attempt) == ("ingest", 2)
    log = await pg.fetch("SELECT to_state FROM transitions WHERE task_id = 'ingest' ORDER BY id")
    assert [r["to_state"] for r in log] == [
        "queued",
        "running",
        "up_for_retry",
        "queued",
        "running",
    ]


async def test_an_attempt_whose_lease_expires_is_lost_and_retried_once(
    coordinator: Coordinator, pg: asyncpg.Connection
) -> None:
    await coordinator.apply([ready()])
    [claim] = await coordinator.claim("w1", 1, LEASE)
    assert await coordinator.reap_expired_leases(10) == 0
    await pg.execute("UPDATE task_instances SET lease_expires_at = now() - interval '1 second'")
    # Two replicas reaping at once: the lost-attempt event has one id, so it applies once.
    await asyncio.gather(coordinator.reap_expired_leases(10), coordinator.reap_expired_leases(10))
    row = await pg.fetchrow("SELECT state, attempt FROM task_instances WHERE task_id = 'ingest'")
    assert (row["state"], row["attempt"]) == ("up_for_retry", 1)
    assert (
        await pg.fetchval("SELECT count(*) FROM transitions WHERE to_state = 'up_for_retry'") == 1
    )
    attempt = await pg.fetchrow("SELECT * FROM task_attempts WHERE task_id = 'ingest'")
    assert "stopped renewing its lease" in attempt["error_snippet"]
    # The lost worker's completion arrives late: it is ignored, and the reason is kept.
    late = await coordinator.apply([completed(claim.run_id, "ingest", 1)])
    assert late.ignored == 1
    reason = await pg.fetchval("SELECT reason FROM ignored_events")
    assert "stale completion" in reason
