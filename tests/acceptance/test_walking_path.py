"""The walking path, end to end through Kafka, with the example pipelines as they ship.

- `customers_raw` 20261120 is announced: `customer_dimension` runs and produces `dim_customer`
  for 2026-11-20;
- `orders_raw` 2026-11-21 is announced: `orders_daily` runs; its `join_customers` waits for
  `dim_customer` of the day before; its `publish` produces `mart.orders_daily`, which
  triggers `revenue_report`: pipelines chain through data.

The service runs as a real subprocess (``python -m service serve``) against the session's
Kafka broker, a fresh PostgreSQL database and Redis. Malformed events go to the dead-letter
topic and the service goes on.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import redis.asyncio as aioredis

from service.events import DatasetReady, validate_data
from service.spec.loader import load_pipeline_file
from tests.support import (
    EXAMPLE_PIPELINES,
    REDIS_URL,
    RunService,
    TopicReader,
    eventually,
    example_tasks,
    produce,
    ready,
)

DATASET_READY = DatasetReady.TYPE
PARTITION = "2026-11-21"
ORDERS = load_pipeline_file(EXAMPLE_PIPELINES / "orders_daily.yaml")
TASKS = list(ORDERS.graph.order)
# The chain ends at the task the finishers follow; they run whatever happened (all_done).
FINALLY = [t for t in TASKS if ORDERS.tasks[t].trigger_rule == "all_done"]
CHAIN = [t for t in TASKS if t not in FINALLY]
OUTPUTS = {o.name for t in TASKS for o in ORDERS.tasks[t].outputs}
PIPELINES = {
    "customer_dimension": "2026-11-20",
    "orders_daily": PARTITION,
    "revenue_report": PARTITION,
}


def status_events(records: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(record.value) for record in records]


def all_ended(records: list[Any]) -> bool:
    ended = [
        e
        for e in status_events(records)
        if e["type"] == "run.status" and e["data"]["state"] in ("success", "failed")
    ]
    return len(ended) >= len(PIPELINES)


async def test_events_run_the_example_pipelines_end_to_end(
    tmp_path: Path, run_service: RunService, database_url: str, kafka_bootstrap: str
) -> None:
    service = await run_service()  # the shipped examples
    triggers, status = service.setting("topic_triggers"), service.setting("topic_status")
    try:
        orders = ready("orders_raw", PARTITION, version="v1")
        customers = ready("customers_raw", "20261120")
        malformed = [
            b"this is not json",
            orjson.dumps(
                {
                    "specversion": "1.0",
                    "id": "m1",
                    "source": "s",
                    "type": DATASET_READY,
                    "data": {"dataset": "orders_raw"},
                }
            ),
            orjson.dumps(
                {"specversion": "1.0", "id": "m2", "source": "s", "type": "mystery", "data": {}}
            ),
        ]
        unmappable = orjson.dumps(
            {
                "specversion": "1.0",
                "id": "m3",
                "source": "s",
                "type": DATASET_READY,
                "data": {"dataset": "orders_raw", "partition": "yesterday"},
            }
        )
        await produce(
            kafka_bootstrap,
            triggers,
            [(b"orders_raw", raw) for raw in [*malformed, unmappable]]
            + [(b"orders_raw", orders.to_bytes()), (b"customers_raw", customers.to_bytes())],
        )

        async with TopicReader(kafka_bootstrap, status) as reader:
            records = await reader.read_until(all_ended, timeout=60)
            # The same event again, and a new event for the same partition: still one run.
            again = ready("orders_raw", PARTITION, version="v1")
            await produce(
                kafka_bootstrap,
                triggers,
                [(b"orders_raw", orders.to_bytes()), (b"orders_raw", again.to_bytes())],
            )
            conn = await asyncpg.connect(database_url)
            try:
                await wait_until_processed(conn, {orders.id, again.id})
                orders_run = await check_database(conn)
            finally:
                await conn.close()
            records = await reader.read_until(all_ended, timeout=5)

        events = status_events(records)
        check_status_events(events, records, orders_run)
        prefix = service.setting("redis_key_prefix")
        await check_live_state(prefix, orders_run)
        await check_http(service.http_port(), orders_run)
        await check_state_without_redis(service.http_port(), prefix, orders_run)

        assert service.alive, "bad input must not stop the service"
        rejected = [e for e in service.log_events() if e.get("event") == "event.rejected"]
        reasons = " | ".join(e["reason"] for e in rejected)
        assert len(rejected) == 3, reasons
        assert "not JSON" in reasons
        assert "data must contain ['partition']" in reasons
        assert "unknown event type 'mystery'" in reasons
        assert all(e["topic"] == triggers and "offset" in e for e in rejected)
        # Each went to the dead-letter topic as it was, with the reason and where it came from.
        async with TopicReader(kafka_bootstrap, service.setting("topic_dead_letter")) as letters:
            dead = await letters.read_until(lambda r: len(r) >= 3, timeout=20)
        assert sorted(r.value for r in dead) == sorted(malformed)
        for letter in dead:
            headers = dict(letter.headers)
            assert letter.key == b"orders_raw"
            assert headers["tributary.topic"] == triggers.encode()
            assert headers["tributary.reason"]
            assert int(headers["tributary.offset"]) >= 0
        # A well-formed event whose partition the pipeline cannot map is recorded, not run.
        mismatch = [
            e for e in service.log_events() if e.get("event") == "trigger.partition_mismatch"
        ]
        assert len(mismatch) == 1
        assert (
            "partition 'yesterday' of 'orders_raw' does not match the format"
            in (mismatch[0]["reason"])
        )
    finally:
        code = service.stop()
    assert code == 0, service.log_text()[-3000:]
    assert "service.stopped" in service.log_text()
    for task_id in TASKS:
        assert any((tmp_path / "task-logs").glob(f"*/{task_id}/1.log"))


async def wait_until_processed(conn: asyncpg.Connection, event_ids: set[str]) -> None:
    async def processed() -> set[str]:
        rows = await conn.fetch(
            "SELECT event_id FROM processed_events WHERE event_id = ANY($1)", list(event_ids)
        )
        return {r["event_id"] for r in rows}

    await eventually(processed, lambda seen: seen == event_ids, 10, "the events to be processed")


async def check_database(conn: asyncpg.Connection) -> str:
    """The three runs, each once and successful; returns the orders_daily run id."""
    runs = {r["pipeline_id"]: r for r in await conn.fetch("SELECT * FROM runs")}
    assert {p: str(r["batch_date"]) for p, r in runs.items()} == PIPELINES
    assert {r["state"] for r in runs.values()} == {"success"}
    run = runs["orders_daily"]
    assert run["started_at"] <= run["ended_at"]
    # The report started from orders_daily's output, and carries its trace.
    assert runs["revenue_report"]["trace_id"] == run["trace_id"]
    assert runs["revenue_report"]["created_at"] >= run["created_at"]
    tasks = {
        r["task_id"]: r
        for r in await conn.fetch("SELECT * FROM task_instances WHERE run_id = $1", run["run_id"])
    }
    assert set(tasks) == set(TASKS)
    for task in tasks.values():
        assert task["state"] == "success"
        assert task["exit_code"] == 0
        assert task["attempt"] == 1
        assert task["ended_at"] >= task["started_at"]
    for upstream, downstream in itertools.pairwise(CHAIN):
        assert tasks[downstream]["started_at"] >= tasks[upstream]["ended_at"]
    for task_id in FINALLY:
        assert tasks[task_id]["started_at"] >= tasks["publish"]["ended_at"]
    # join_customers waited for the dimension, produced by customer_dimension's build.
    dimension = await conn.fetchrow(
        "SELECT * FROM dataset_partitions WHERE dataset = 'dim_customer'"
    )
    assert dimension["partition"] == "2026-11-20"
    assert tasks["join_customers"]["started_at"] >= dimension["recorded_at"]
    produced = await conn.fetchval(
        "SELECT count(*) FROM dataset_partitions WHERE dataset = 'mart.orders_daily'"
        " AND partition = $1",
        PARTITION,
    )
    assert produced == 1
    attempts = await conn.fetch("SELECT * FROM task_attempts WHERE run_id = $1", run["run_id"])
    assert sorted(a["task_id"] for a in attempts) == sorted(TASKS)
    # Published, and marked sent by the relay's next round (its poll, at the latest).
    await eventually(
        lambda: conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"),
        lambda unsent: unsent == 0,
        10.0,
        "every event to be marked sent",
    )
    log = await conn.fetch(
        "SELECT task_id, to_state FROM transitions WHERE run_id = $1 ORDER BY id", run["run_id"]
    )
    assert [r["to_state"] for r in log if r["task_id"] is None] == ["queued", "running", "success"]
    run_id: str = run["run_id"]
    return run_id


def check_status_events(events: list[dict[str, Any]], records: list[Any], run_id: str) -> None:
    for event, record in zip(events, records, strict=True):
        validate_data(event["type"], event["data"])
        assert record.key.decode() == event["data"]["run_id"]
        assert dict(record.headers)["content-type"].startswith(b"application/cloudevents+json")
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)
    mine = [e for e in events if e["data"]["run_id"] == run_id]
    run_states = [e["data"]["state"] for e in mine if e["type"] == "run.status"]
    assert run_states == ["queued", "running", "success"]
    for task_id in TASKS:
        states = [
            e["data"]["state"]
            for e in mine
            if e["type"] == "task.status" and e["data"]["task_id"] == task_id
        ]
        assert states == ["queued", "running", "success"], task_id
    done = [e for e in mine if e["type"] == "task.status" and e["data"]["state"] == "success"]
    assert all(e["data"]["exit_code"] == 0 for e in done)
    assert len({e["data"]["trace_id"] for e in mine}) == 1
    produced = [e["data"] for e in mine if e["type"] == "dataset.produced"]
    assert {(p["dataset"], p["partition"]) for p in produced} == {
        (name, PARTITION) for name in OUTPUTS
    }


async def problem_of(response: aiohttp.ClientResponse) -> str:
    """An error's detail, from its application/problem+json body."""
    assert response.content_type == "application/problem+json"
    detail: str = (await response.json(content_type=None))["detail"]
    return detail


async def check_http(port: int, run_id: str) -> None:
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with http.get(f"{base}/readyz") as response:
            body = await response.json()
            assert response.status == 200, body
            assert body["checks"] == {"postgres": "ok", "kafka": "ok", "redis": "ok", "loops": "ok"}
        async with http.get(f"{base}/api/runs?pipeline=orders_daily") as response:
            runs = (await response.json())["runs"]
            assert [(r["run_id"], r["state"]) for r in runs] == [(run_id, "success")]
        async with http.get(f"{base}/api/runs") as response:
            assert len((await response.json())["runs"]) == len(PIPELINES)
        async with http.get(f"{base}/api/runs/{run_id}") as response:
            tasks = (await response.json())["tasks"]
            assert [t["task_id"] for t in tasks][: len(CHAIN)] == CHAIN
        async with http.get(f"{base}/metrics") as response:
            assert response.status == 200
            scraped = await response.text()
        per_pipeline = [
            line
            for p in PIPELINES
            for line in (
                f'tributary_runs_ended_total{{pipeline="{p}",state="success"}} 1.0',
                f'tributary_run_duration_seconds_count{{pipeline="{p}",state="success"}} 1.0',
                f'tributary_tasks_ended_total{{pipeline="{p}",state="success"}} '
                f"{len(example_tasks(p))}.0",
                *(
                    f'tributary_task_duration_seconds_count{{outcome="success",pipeline="{p}",'
                    f'task="{t}"}} 1.0'
                    for t in example_tasks(p)
                ),
                f'tributary_task_queue_wait_seconds_count{{pipeline="{p}",task=',
            )
        ]
        for line in (
            *per_pipeline,
            'tributary_scheduling_latency_seconds_count{pipeline="orders_daily"}',
            "tributary_outbox_published_total",
            "tributary_dead_letters_total{topic=",
            "tributary_live_state_available 1.0",
        ):
            assert line in scraped, line
        async with http.get(f"{base}/api/runs/{run_id}/state") as response:
            state = await response.json()
            assert (state["source"], state["state"]) == ("redis", "success")
            assert set(state["tasks"].values()) == {"success"}
        async with http.get(f"{base}/api/runs/no-such-run/state") as response:
            assert response.status == 404
        async with http.get(f"{base}/api/runs/no-such-run") as response:
            assert response.status == 404
            assert "no run 'no-such-run'" in (await problem_of(response))
        async with http.get(f"{base}/api/runs?limit=lots") as response:
            assert response.status == 400
            assert "'limit' and 'offset' must be integers" in (await problem_of(response))
        for bad in ("/api/runs/a%00b", "/api/runs/a%00b/state", "/api/runs?pipeline=x%00"):
            async with http.get(base + bad) as response:
                assert response.status == 400, bad
                assert (
                    "must be 1 to 200 letters" in (await response.json(content_type=None))["detail"]
                )


async def check_state_without_redis(port: int, prefix: str, run_id: str) -> None:
    """Once Redis has nothing for the run (expired), the same view comes from PostgreSQL."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.delete(f"{prefix}:run:{run_id}", f"{prefix}:run:{run_id}:tasks")
    finally:
        await client.aclose()
    url = f"http://127.0.0.1:{port}/api/runs/{run_id}/state"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        state = await response.json()
    assert (state["source"], state["state"]) == ("postgres", "success")
    assert set(state["tasks"]) == set(TASKS)


async def check_live_state(prefix: str, run_id: str) -> None:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        key = f"{prefix}:run:{run_id}"
        await eventually(
            lambda: client.hget(key, "state"), lambda s: s == "success", 10, "the live run state"
        )
        assert await client.ttl(key) > 0
        tasks = await client.hgetall(f"{key}:tasks")
        assert {orjson.loads(v)["state"] for v in tasks.values()} == {"success"}
    finally:
        await client.aclose()
