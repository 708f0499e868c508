"""The durable engine under load, against the local PostgreSQL (a fresh database, dropped after).

1. Trigger ingestion: N dataset.ready events -> N runs, applied in consumer-sized batches.
2. State transitions per second: runs of a 4-task diamond driven to the end by batched claims
   and completions, every transition durable (guarded update + log row + outbox row).
3. Task-to-task latency in the real service (embedded Tansu broker, executor, relay): a
   chain of 50 `true` tasks; for each hop, predecessor ended -> successor queued / started,
   and the chain's wall time against a bare asyncio subprocess loop (the floor).

    .venv/bin/python bench/engine.py [--events 10000] [--runs 2000] [--chain-runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from service import devenv
from service.app import Service
from service.bus.envelope import DATASET_READY, TASK_COMPLETED, new_event
from service.config import load_settings
from service.coordinator import Coordinator, StatusTopic
from service.pipelines import PipelineRegistry
from service.store import connect

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BATCH = 500
SUCCESSFUL_CHAINS = "SELECT count(*) FROM runs WHERE pipeline_id = 'chain' AND state = 'success'"
DIAMOND = """\
id: diamond
triggers: {datasets: [{dataset: bench_ready}]}
tasks:
  - {id: a, command: ["true"]}
  - {id: b, requires: [a], command: ["true"]}
  - {id: c, requires: [a], command: ["true"]}
  - {id: d, requires: [b, c], command: ["true"]}
"""


def chain(length: int) -> str:
    lines = ["id: chain", "triggers: {datasets: [{dataset: chain_ready}]}", "tasks:"]
    for i in range(length):
        requires = f", requires: [t{i - 1}]" if i else ""
        lines.append(f'  - {{id: t{i}, command: ["true"]{requires}}}')
    return "\n".join(lines) + "\n"


def ready(dataset: str, day: int) -> object:
    partition = (date(2000, 1, 1) + timedelta(days=day)).isoformat()
    return new_event(DATASET_READY, "urn:bench", {"dataset": dataset, "partition": partition})


async def ingest_and_transitions(url: str, pipelines: Path, events: int, runs: int) -> None:
    store = await connect(url, 4)
    registry = PipelineRegistry(store)
    await registry.load(pipelines)
    coordinator = Coordinator(store, registry, StatusTopic("bench.status", "urn:bench"), "bench")

    batch = [ready("bench_ready", i) for i in range(events)]
    started = time.perf_counter()
    for i in range(0, events, BATCH):
        await coordinator.apply(batch[i : i + BATCH])  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    print(
        f"trigger ingestion: {events} dataset.ready -> {events} runs in {elapsed:.2f} s "
        f"= {events / elapsed:,.0f} events/s ({BATCH} per transaction)"
    )

    conn = await asyncpg.connect(url)
    await conn.execute("DELETE FROM runs")
    await conn.execute("TRUNCATE transitions, outbox")
    await conn.close()
    for i in range(0, runs, BATCH):
        await coordinator.apply(
            [ready("bench_ready", 100_000 + d) for d in range(i, min(i + BATCH, runs))]
        )  # type: ignore[misc]
    conn = await asyncpg.connect(url)
    before = await conn.fetchval("SELECT count(*) FROM transitions")
    started = time.perf_counter()
    while True:
        claims = await coordinator.claim("bench-worker", BATCH, 60)
        if not claims:
            break
        done = [
            new_event(
                TASK_COMPLETED,
                "urn:bench:worker",
                {
                    "run_id": c.run_id,
                    "task_id": c.task_id,
                    "attempt": c.attempt,
                    "outcome": "success",
                    "exit_code": 0,
                },
            )
            for c in claims
        ]
        await coordinator.apply(done)
    elapsed = time.perf_counter() - started
    transitions = await conn.fetchval("SELECT count(*) FROM transitions") - before
    finished = await conn.fetchval("SELECT count(*) FROM runs WHERE state = 'success'")
    await conn.close()
    await store.close()
    print(
        f"state transitions: {transitions:,} in {elapsed:.2f} s = {transitions / elapsed:,.0f}/s "
        f"({finished} diamond runs to success; claims and completions {BATCH} per transaction)"
    )


async def chain_latency(
    url: str, pipelines: Path, work: Path, chain_runs: int, length: int
) -> None:
    port = devenv.free_port()
    broker = devenv.start_tansu(port, work / "tansu.log")
    prefix = f"bench-{secrets.token_hex(3)}"
    env = {
        "TRIBUTARY_ENV": "bench",
        "TRIBUTARY_DATABASE_URL": url,
        "TRIBUTARY_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "TRIBUTARY_KAFKA_ENABLE_IDEMPOTENCE": "false",
        "TRIBUTARY_KAFKA_FETCH_MAX_WAIT_MS": "25",
        "TRIBUTARY_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "TRIBUTARY_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "TRIBUTARY_KAFKA_CONSUMER_GROUP": prefix,
        "TRIBUTARY_TOPIC_TRIGGERS": f"{prefix}.t",
        "TRIBUTARY_TOPIC_COMPLETIONS": f"{prefix}.c",
        "TRIBUTARY_TOPIC_STATUS": f"{prefix}.s",
        "TRIBUTARY_TOPIC_DEAD_LETTER": f"{prefix}.d",
        "TRIBUTARY_PIPELINES_DIR": str(pipelines),
        "TRIBUTARY_TASK_LOG_DIR": str(work / "logs"),
        "TRIBUTARY_HTTP_PORT": "0",
        "TRIBUTARY_LOG_LEVEL": "WARNING",
    }
    service = Service(load_settings(environ=env))
    stop = asyncio.Event()
    runner = asyncio.create_task(service.run(stop))
    await service.started.wait()
    producer = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{port}", acks="all", linger_ms=0)
    await producer.start()
    conn = await asyncpg.connect(url)
    walls = []
    try:
        for i in range(chain_runs):
            started = time.perf_counter()
            event = ready("chain_ready", 200_000 + i)
            await producer.send_and_wait(f"{prefix}.t", event.to_bytes(), key=b"chain_ready")  # type: ignore[attr-defined]
            # Polling the table is the measurement itself: how soon the run is seen ended.
            while await conn.fetchval(SUCCESSFUL_CHAINS) < i + 1:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            walls.append(time.perf_counter() - started)
        hops = await conn.fetch("""
            SELECT (n.queued_at - p.ended_at) AS to_queued,
                   (n.started_at - p.ended_at) AS to_started
            FROM task_instances p JOIN task_instances n
              ON n.run_id = p.run_id AND n.task_id = 't' || (substr(p.task_id, 2)::int + 1)
            JOIN runs r ON r.run_id = p.run_id AND r.pipeline_id = 'chain'""")
        attempts = sorted(
            r["ran"].total_seconds() * 1000
            for r in await conn.fetch(
                "SELECT a.ended_at - a.started_at AS ran FROM task_attempts a JOIN runs r "
                "USING (run_id) WHERE r.pipeline_id = 'chain'"
            )
        )
    finally:
        await conn.close()
        await producer.stop()
        stop.set()
        await runner
        broker.terminate()
        broker.wait(timeout=10)
    floor = await bare_floor(length)
    queued = sorted(h["to_queued"].total_seconds() * 1000 for h in hops)
    started_ms = sorted(h["to_started"].total_seconds() * 1000 for h in hops)
    p = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]  # noqa: E731
    print(
        f"task to task ({len(hops)} hops in {chain_runs} chains of {length} `true` tasks): "
        f"ended -> successor queued p50 {p(queued, 0.5):.1f} ms p99 {p(queued, 0.99):.1f} ms; "
        f"-> started p50 {p(started_ms, 0.5):.1f} ms p99 {p(started_ms, 0.99):.1f} ms"
    )
    print(
        f"attempt of `true` (claimed -> exit reported): p50 {p(attempts, 0.5):.1f} ms "
        f"p99 {p(attempts, 0.99):.1f} ms"
    )
    median = statistics.median(walls)
    print(
        f"chain of {length} (dataset.ready on Kafka -> run success): median {median:.3f} s; "
        f"floor (bare asyncio subprocess loop) {floor:.3f} s; ratio {median / floor:.1f}x"
    )


async def bare_floor(length: int) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(length):
            process = await asyncio.create_subprocess_exec("true")
            await process.wait()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def main() -> None:
    from service.observability import configure_logging

    configure_logging("WARNING")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--chain-runs", type=int, default=3)
    parser.add_argument("--chain-length", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pipelines = work / "pipelines"
        pipelines.mkdir()
        (pipelines / "diamond.yaml").write_text(DIAMOND)
        (pipelines / "chain.yaml").write_text(chain(args.chain_length))
        database = f"tributary_bench_{secrets.token_hex(4)}"
        await admin(f'CREATE DATABASE "{database}"')
        url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + database
        try:
            store = await connect(url, 2)
            await store.migrate()
            await store.close()
            await ingest_and_transitions(url, pipelines, args.events, args.runs)
            await chain_latency(url, pipelines, work, args.chain_runs, args.chain_length)
        finally:
            await admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
