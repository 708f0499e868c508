"""OpenLineage RunEvents to a real local HTTP endpoint: START and its end, paired by run id."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer

from service import devenv
from service.bus.envelope import TASK_STATUS, new_event
from service.lineage import LineageEmitter, dataset
from service.spec.loader import pipeline_from_data
from service.store.records import OutboxMessage
from tests.support import TopicReader, eventually

PIPELINE = pipeline_from_data(
    {
        "id": "orders_daily",
        "tasks": [
            {
                "id": "publish",
                "command": ["true"],
                "inputs": ["s3://lake/orders/dt={batch_date}"],
                "outputs": [
                    {"uri": "pg://warehouse:5432/mart.orders_daily", "dataset": "mart.orders_daily"}
                ],
            }
        ],
    },
    "test",
)


def status(state: str, attempt: int = 1) -> OutboxMessage:
    data = {
        "run_id": "r1",
        "pipeline_id": "orders_daily",
        "task_id": "publish",
        "attempt": attempt,
        "state": state,
        "batch_date": "2026-11-21",
        "trace_id": "t" * 32,
        "at": "2026-11-21T01:00:00Z",
    }
    return OutboxMessage(1, "s", "r1", new_event(TASK_STATUS, "urn:t", data).to_bytes())


async def test_an_attempt_is_a_start_and_a_complete_with_its_datasets() -> None:
    received: list[dict[str, Any]] = []

    async def endpoint(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({}, status=201)

    app = web.Application()
    app.router.add_post("/api/v1/lineage", endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    port = devenv.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    emitter = LineageEmitter(
        f"http://127.0.0.1:{port}/api/v1/lineage", "tributary", {"orders_daily": PIPELINE}.get
    )
    loop = asyncio.create_task(emitter.run())
    try:
        emitter.offer([status("queued"), status("running"), status("success")])
        emitter.offer([status("running", 2), status("timed_out", 2)])
        await eventually(
            lambda: asyncio.sleep(0, len(received)), lambda n: n == 4, 10, "four events"
        )
    finally:
        loop.cancel()
        await runner.cleanup()
    assert [e["eventType"] for e in received] == ["START", "COMPLETE", "START", "FAIL"]
    first, done = received[0], received[1]
    assert first["run"]["runId"] == done["run"]["runId"] != received[2]["run"]["runId"]
    uuid.UUID(first["run"]["runId"])  # a UUID, as the spec asks
    assert first["job"] == {"namespace": "tributary", "name": "orders_daily.publish"}
    assert first["inputs"] == [{"namespace": "s3://lake", "name": "orders/dt=2026-11-21"}]
    assert first["outputs"] == [{"namespace": "pg://warehouse:5432", "name": "mart.orders_daily"}]
    assert first["eventTime"] == "2026-11-21T01:00:00Z"


def test_datasets_split_the_uri() -> None:
    assert dataset("https://api.example.com/v1/items?day=1") == {
        "namespace": "https://api.example.com",
        "name": "v1/items?day=1",
    }


async def test_or_to_a_kafka_topic_keyed_by_job(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}.lineage"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    emitter = LineageEmitter(None, "tributary", {"orders_daily": PIPELINE}.get, producer, topic)
    loop = asyncio.create_task(emitter.run())
    try:
        emitter.offer([status("running"), status("failed")])
        async with TopicReader(kafka_bootstrap, topic) as reader:
            records = await reader.read_until(lambda r: len(r) >= 2, timeout=20)
    finally:
        loop.cancel()
        await producer.stop()
    assert [orjson.loads(r.value)["eventType"] for r in records] == ["START", "FAIL"]
    assert {r.key for r in records} == {b"run:tributary/orders_daily.publish"}
