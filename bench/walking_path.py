"""Time from a dataset.ready event to the run's `success` status event, for the example chain.

Starts its own Tansu broker, a fresh database on the local PostgreSQL (dropped afterwards) and
`tributary serve` as a subprocess, then announces N partitions one after another and measures,
for each, the time from producing the event to reading `run.status: success`. The floor is
the same three task commands run back to back with a bare asyncio subprocess loop.

    .venv/bin/python bench/walking_path.py [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from scratch import create_database, drop_database

from service import devenv
from service.events import DatasetReady, new_event
from service.spec.loader import load_pipeline_file
from service.spec.params import resolve_params
from service.spec.render import render_task, template_values

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "examples" / "pipelines" / "orders_daily.yaml"


async def floor(batch_date: str) -> float:
    """The example's commands, rendered as the executor renders them, wave after wave
    (the tasks of a wave at once), with nothing around them."""
    pipeline = load_pipeline_file(PIPELINE)
    params = resolve_params(pipeline.spec.params, {})
    started = time.perf_counter()
    for wave in pipeline.graph.waves():
        processes = []
        for task_id in wave:
            values = template_values(
                batch_date=date.fromisoformat(batch_date),
                run_id="floor",
                attempt=1,
                task_id=task_id,
                pipeline_id=pipeline.id,
                params=params,
            )
            task = render_task(pipeline, task_id, values)
            env = {**os.environ, **task.env}
            processes.append(
                await asyncio.create_subprocess_exec(
                    *task.argv,
                    cwd=ROOT,
                    env=env,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
            )
        codes = [await process.wait() for process in processes]
        if any(codes):
            raise SystemExit(f"floor: a command of {wave} failed: {codes}")
    return time.perf_counter() - started


async def run_succeeded(
    status: AIOKafkaConsumer, pipeline_id: str, batch_date: date, within: float = 60
) -> None:
    """Read status events until the run of ``pipeline_id`` for ``batch_date`` succeeded."""
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        batches = await status.getmany(timeout_ms=100)
        if any(
            (e := orjson.loads(r.value))["type"] == "run.status"
            and e["data"]["state"] == "success"
            and e["data"]["pipeline_id"] == pipeline_id
            and e["data"]["batch_date"] == batch_date.isoformat()
            for records in batches.values()
            for r in records
        ):
            return
    raise SystemExit(f"{pipeline_id} for {batch_date} did not succeed within {within:.0f} s")


async def measure(bootstrap: str, env: dict[str, str], runs: int) -> list[float]:
    status = AIOKafkaConsumer(
        env["TRIBUTARY_TOPIC_STATUS"],
        bootstrap_servers=bootstrap,
        auto_offset_reset="latest",
        group_id=None,
        fetch_max_wait_ms=25,
    )
    await status.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    timings = []
    try:
        await status.getmany(timeout_ms=500)  # join and settle at the end of the topic
        for i in range(runs):
            day = date(2026, 1, 1) + timedelta(days=i)
            # orders_daily waits for the customer dimension of the day before; have it ready so
            # the timing is the orders chain alone.
            customers = (day - timedelta(days=1)).strftime("%Y%m%d")
            dimension = new_event(DatasetReady("customers_raw", customers), "urn:bench")
            await producer.send_and_wait(
                env["TRIBUTARY_TOPIC_TRIGGERS"], dimension.to_bytes(), key=b"customers_raw"
            )
            await run_succeeded(status, "customer_dimension", day - timedelta(days=1))

            event = new_event(DatasetReady("orders_raw", day.isoformat()), "urn:bench")
            started = time.perf_counter()
            await producer.send_and_wait(
                env["TRIBUTARY_TOPIC_TRIGGERS"], event.to_bytes(), key=b"orders_raw"
            )
            await run_succeeded(status, "orders_daily", day)
            timings.append(time.perf_counter() - started)
    finally:
        await producer.stop()
        await status.stop()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tributary-bench-"))
    port = devenv.free_port()
    broker = devenv.start_tansu(port, work / "tansu.log")
    bootstrap = f"127.0.0.1:{port}"
    database_url = asyncio.run(create_database())
    prefix = f"bench-{secrets.token_hex(3)}"
    env = {
        "TRIBUTARY_ENV": "bench",
        "TRIBUTARY_DATABASE_URL": database_url,
        "TRIBUTARY_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TRIBUTARY_KAFKA_ENABLE_IDEMPOTENCE": "false",
        "TRIBUTARY_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "TRIBUTARY_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "TRIBUTARY_KAFKA_FETCH_MAX_WAIT_MS": "25",
        "TRIBUTARY_KAFKA_CONSUMER_GROUP": f"{prefix}-group",
        "TRIBUTARY_TOPIC_TRIGGERS": f"{prefix}.triggers",
        "TRIBUTARY_TOPIC_COMPLETIONS": f"{prefix}.completions",
        "TRIBUTARY_TOPIC_STATUS": f"{prefix}.status",
        "TRIBUTARY_REDIS_URL": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "TRIBUTARY_REDIS_KEY_PREFIX": prefix,
        "TRIBUTARY_REDIS_STATE_TTL_SECONDS": "300",
        "TRIBUTARY_PIPELINES_DIR": str(PIPELINE.parent),
        "TRIBUTARY_TASK_LOG_DIR": str(work / "logs"),
        "TRIBUTARY_ATTEMPT_STATE_DIR": str(work / "attempts"),
        "TRIBUTARY_HTTP_PORT": "0",
        "TRIBUTARY_LOG_LEVEL": "WARNING",
    }
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")}
    with (work / "service.log").open("wb") as log:
        service = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            cwd=ROOT,
            env={**base_env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(3)  # start-up: migrations, topics, consumer group join
        floors = [asyncio.run(floor("2026-01-01")) for _ in range(5)]
        timings = asyncio.run(measure(bootstrap, env, args.runs))
    finally:
        service.terminate()
        service.wait(timeout=30)
        broker.terminate()
        broker.wait(timeout=10)
        asyncio.run(drop_database(database_url))

    floor_median = statistics.median(floors)
    median = statistics.median(timings)
    tasks = len(load_pipeline_file(PIPELINE).tasks)
    print(f"example pipeline orders_daily ({tasks} tasks), {args.runs} runs one after another")
    print(
        f"  dataset.ready -> run.status success: median {median * 1000:.0f} ms, "
        f"min {min(timings) * 1000:.0f} ms, max {max(timings) * 1000:.0f} ms"
    )
    print(f"  floor (the same commands, wave by wave): median {floor_median * 1000:.0f} ms")
    print(
        f"  orchestration overhead: {(median - floor_median) * 1000:.0f} ms per run "
        f"({median / floor_median:.2f}x the floor)"
    )


if __name__ == "__main__":
    main()
