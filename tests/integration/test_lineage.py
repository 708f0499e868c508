"""OpenLineage RunEvents to a real local HTTP endpoint: START and its end, paired by run id."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer

from service import devenv
from service.clock import parse_timestamp
from service.engine.states import TaskState
from service.events import CloudEvent, TaskStatus, new_event
from service.lineage import LineageEmitter, dataset
from service.pipelines import RunContext
from service.spec.loader import pipeline_from_data
from tests.support import Background, TopicReader, eventually, settled

PIPELINE = pipeline_from_data(
    {
        "id": "orders_daily",
        "params": {"region": {"type": "string", "default": "all"}},
        "tasks": [
            {
                "id": "publish",
                "command": ["true"],
                "inputs": ["s3://lake/orders/{params.region}/dt={batch_date}"],
                "outputs": [
                    {"uri": "pg://warehouse:5432/mart.orders_daily", "dataset": "mart.orders_daily"}
                ],
            }
        ],
    },
    "test",
)
RUN = RunContext(PIPELINE, {"region": "north"})  # the run's own parameters


async def context_of(status: TaskStatus) -> RunContext | None:
    return RUN if status.run_id == "r1" else None


def status(state: str, attempt: int = 1) -> CloudEvent:
    payload = TaskStatus(
        run_id="r1",
        pipeline_id="orders_daily",
        task_id="publish",
        attempt=attempt,
        batch_date=date(2026, 11, 21),
        state=TaskState(state),
        previous_state=None,
        reason="",
        trace_id="t" * 32,
        at=parse_timestamp("2026-11-21T01:00:00Z"),
    )
    return new_event(payload, "urn:t")


async def test_an_attempt_is_a_start_and_a_complete_with_its_datasets(
    background: Background,
) -> None:
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
    emitter = LineageEmitter(f"http://127.0.0.1:{port}/api/v1/lineage", "tributary", context_of)
    background(emitter.run())
    try:
        emitter.offer([status("queued"), status("running"), status("success")])
        emitter.offer([status("running", 2), status("timed_out", 2)])
        await eventually(lambda: settled(len(received)), lambda n: n == 4, 10, "four events")
    finally:
        await runner.cleanup()
    assert [e["eventType"] for e in received] == ["START", "COMPLETE", "START", "FAIL"]
    first, done = received[0], received[1]
    assert first["run"]["runId"] == done["run"]["runId"] != received[2]["run"]["runId"]
    uuid.UUID(first["run"]["runId"])  # a UUID, as the spec asks
    assert first["job"] == {"namespace": "tributary", "name": "orders_daily.publish"}
    assert first["inputs"] == [{"namespace": "s3://lake", "name": "orders/north/dt=2026-11-21"}]
    assert first["outputs"] == [{"namespace": "pg://warehouse:5432", "name": "mart.orders_daily"}]
    assert first["eventTime"] == "2026-11-21T01:00:00.000Z"


def test_datasets_split_the_uri() -> None:
    assert dataset("https://api.example.com/v1/items?day=1") == {
        "namespace": "https://api.example.com",
        "name": "v1/items?day=1",
    }


async def test_or_to_a_kafka_topic_keyed_by_job(
    kafka_bootstrap: str, topic_prefix: str, background: Background
) -> None:
    topic = f"{topic_prefix}.lineage"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    emitter = LineageEmitter(None, "tributary", context_of, producer, topic)
    background(emitter.run())
    try:
        emitter.offer([status("running"), status("failed")])
        async with TopicReader(kafka_bootstrap, topic) as reader:
            records = await reader.read_until(lambda r: len(r) >= 2, timeout=20)
    finally:
        await producer.stop()
    assert [orjson.loads(r.value)["eventType"] for r in records] == ["START", "FAIL"]
    assert {r.key for r in records} == {b"run:tributary/orders_daily.publish"}
