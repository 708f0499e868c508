"""The executor against its floor: the same work with and without orchestration.

In one run, side by side, each shape median of N runs through the real service (embedded
Tansu broker, PostgreSQL, in-process executor), triggered by dataset.ready on Kafka, until the
run's success is committed:

  (a) a chain of 50 dependent tasks, each running `true`: total time, per-task overhead;
  (b) 200 independent `true` tasks at concurrency 4: tasks per second;
  (c) both shapes as a bare asyncio.create_subprocess_exec loop (the floor), and the ratios.

Also the task-to-task latency inside the chain: predecessor ended -> successor started.

    .venv/bin/python bench/executor.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer
from scratch import scratch_database

from service import devenv
from service.app import Service
from service.config import load_settings
from service.events import DatasetReady, new_event
from service.observability import configure_logging
from service.store import connect

CHAIN, FAN, CONCURRENCY = 50, 200, 4


def chain_spec() -> str:
    lines = ["id: chain", "triggers: {datasets: [{dataset: chain_ready}]}", "tasks:"]
    for i in range(CHAIN):
        requires = f", requires: [t{i - 1}]" if i else ""
        lines.append(f'  - {{id: t{i}, command: ["true"]{requires}}}')
    return "\n".join(lines) + "\n"


def fan_spec() -> str:
    lines = ["id: fan", "triggers: {datasets: [{dataset: fan_ready}]}", "tasks:"]
    lines += [f'  - {{id: t{i}, command: ["true"]}}' for i in range(FAN)]
    return "\n".join(lines) + "\n"


async def floor_chain() -> float:
    started = time.perf_counter()
    for _ in range(CHAIN):
        process = await asyncio.create_subprocess_exec("true")
        await process.wait()
    return time.perf_counter() - started


async def floor_fan() -> float:
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with slots:
            process = await asyncio.create_subprocess_exec("true")
            await process.wait()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(FAN)))
    return time.perf_counter() - started


async def through_service(url: str, pipelines: Path, work: Path, repeat: int) -> dict[str, object]:
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
        "TRIBUTARY_TOPIC_REQUESTS": f"{prefix}.r",
        "TRIBUTARY_PIPELINES_DIR": str(pipelines),
        "TRIBUTARY_TASK_LOG_DIR": str(work / "logs"),
        "TRIBUTARY_ATTEMPT_STATE_DIR": str(work / "attempts"),
        "TRIBUTARY_HTTP_PORT": "0",
        "TRIBUTARY_LOG_LEVEL": "WARNING",
        "TRIBUTARY_MAX_PARALLEL_TASKS": str(CONCURRENCY),
    }
    service = Service(load_settings(environ=env))
    stop = asyncio.Event()
    runner = asyncio.create_task(service.run(stop))
    await service.started.wait()
    producer = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{port}", acks="all", linger_ms=0)
    await producer.start()
    conn = await asyncpg.connect(url)
    times: dict[str, list[float]] = {"chain": [], "fan": []}
    try:
        for i in range(repeat):
            for pipeline in ("chain", "fan"):
                partition = (date(2030, 1, 1) + timedelta(days=i)).isoformat()
                event = new_event(DatasetReady(f"{pipeline}_ready", partition), "urn:bench")
                started = time.perf_counter()
                await producer.send_and_wait(
                    f"{prefix}.t", event.to_bytes(), key=f"{pipeline}_ready".encode()
                )
                query = "SELECT count(*) FROM runs WHERE pipeline_id = $1 AND state = 'success'"
                # Polling the table is the measurement itself: how soon the run is seen ended.
                while await conn.fetchval(query, pipeline) < i + 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.002)
                times[pipeline].append(time.perf_counter() - started)
        hops = sorted(
            r["gap"].total_seconds() * 1000
            for r in await conn.fetch("""
            SELECT n.started_at - p.ended_at AS gap
            FROM task_instances p JOIN task_instances n
              ON n.run_id = p.run_id AND n.task_id = 't' || (substr(p.task_id, 2)::int + 1)
            JOIN runs r ON r.run_id = p.run_id AND r.pipeline_id = 'chain'""")
        )
    finally:
        await conn.close()
        await producer.stop()
        stop.set()
        await runner
        broker.terminate()
        broker.wait(timeout=10)
    return {
        "chain": statistics.median(times["chain"]),
        "fan": statistics.median(times["fan"]),
        "hop_p50": hops[len(hops) // 2],
        "hop_p99": hops[min(len(hops) - 1, int(len(hops) * 0.99))],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pipelines = work / "pipelines"
        pipelines.mkdir()
        (pipelines / "chain.yaml").write_text(chain_spec())
        (pipelines / "fan.yaml").write_text(fan_spec())
        async with scratch_database() as url:
            store = await connect(url, 2)
            await store.migrate()
            await store.close()
            measured = await through_service(url, pipelines, work, args.repeat)
    floors = {
        "chain": statistics.median([await floor_chain() for _ in range(args.repeat)]),
        "fan": statistics.median([await floor_fan() for _ in range(args.repeat)]),
    }
    chain, fan = float(measured["chain"]), float(measured["fan"])  # type: ignore[arg-type]
    print(f"medians of {args.repeat}; floor = a bare asyncio.create_subprocess_exec loop")
    print(
        f"(a) chain of {CHAIN} `true`: {chain:.3f} s, floor {floors['chain']:.3f} s, "
        f"ratio {chain / floors['chain']:.1f}x; per-task overhead "
        f"{(chain - floors['chain']) / CHAIN * 1000:.1f} ms"
    )
    print(
        f"(b) {FAN} independent `true`, concurrency {CONCURRENCY}: {FAN / fan:.0f} tasks/s "
        f"({fan:.3f} s), floor {FAN / floors['fan']:.0f} tasks/s ({floors['fan']:.3f} s), "
        f"ratio {fan / floors['fan']:.1f}x"
    )
    print(
        f"task to task in the chain (predecessor ended -> successor started): "
        f"p50 {measured['hop_p50']:.1f} ms, p99 {measured['hop_p99']:.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
