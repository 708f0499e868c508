"""The durable engine under load, against the local PostgreSQL (a fresh database, dropped after).

1. Trigger ingestion: N dataset.ready events -> N runs, applied in consumer-sized batches.
2. State transitions per second: runs of a 4-task diamond driven to the end by batched claims
   and completions, every transition durable (guarded update + log row + outbox row).
(The executor against its floor, and task-to-task latency in the service: bench/executor.py.)

    .venv/bin/python bench/engine.py [--events 10000] [--runs 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import asyncpg
from scratch import scratch_database

from service.engine.states import TaskState
from service.events import CloudEvent, DatasetReady, TaskCompleted, new_event
from service.orchestrator.core import Orchestrator
from service.orchestrator.outgoing import Outgoing
from service.pipelines import PipelineRegistry
from service.store import connect
from service.store.records import ClaimBudget

BATCH = 500
# No run waits for room: this measures the engine's work, not the max_active_runs limit.
DIAMOND = """\
id: diamond
max_active_runs: 100000
triggers: {datasets: [{dataset: bench_ready}]}
tasks:
  - {id: a, command: ["true"]}
  - {id: b, requires: [a], command: ["true"]}
  - {id: c, requires: [a], command: ["true"]}
  - {id: d, requires: [b, c], command: ["true"]}
"""


def ready(dataset: str, day: int) -> CloudEvent:
    partition = (date(2000, 1, 1) + timedelta(days=day)).isoformat()
    return new_event(DatasetReady(dataset, partition), "urn:bench")


async def ingest_and_transitions(url: str, pipelines: Path, events: int, runs: int) -> None:
    store = await connect(url, 4)
    registry = PipelineRegistry(store)
    await registry.load(pipelines)
    outgoing = Outgoing("bench.status", "bench.requests", "urn:bench")
    core = Orchestrator.build(store=store, registry=registry, outgoing=outgoing, actor="bench")
    applier, claimer = core.applier, core.claimer

    batch = [ready("bench_ready", i) for i in range(events)]
    started = time.perf_counter()
    for i in range(0, events, BATCH):
        await applier.apply(batch[i : i + BATCH])
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
        await applier.apply(
            [ready("bench_ready", 100_000 + d) for d in range(i, min(i + BATCH, runs))]
        )
    conn = await asyncpg.connect(url)
    before = await conn.fetchval("SELECT count(*) FROM transitions")
    started = time.perf_counter()
    while True:
        claims = await claimer.claim("bench-worker", ClaimBudget(BATCH), 60)
        if not claims:
            break
        done = [
            new_event(
                TaskCompleted(c.run_id, c.task_id, c.attempt, TaskState.SUCCESS, exit_code=0),
                "urn:bench:worker",
            )
            for c in claims
        ]
        await applier.apply(done)
    elapsed = time.perf_counter() - started
    transitions = await conn.fetchval("SELECT count(*) FROM transitions") - before
    finished = await conn.fetchval("SELECT count(*) FROM runs WHERE state = 'success'")
    await conn.close()
    await store.close()
    print(
        f"state transitions: {transitions:,} in {elapsed:.2f} s = {transitions / elapsed:,.0f}/s "
        f"({finished} diamond runs to success; claims and completions {BATCH} per transaction)"
    )


async def main() -> None:
    from service.observability import configure_logging

    configure_logging("WARNING")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pipelines = work / "pipelines"
        pipelines.mkdir()
        (pipelines / "diamond.yaml").write_text(DIAMOND)
        async with scratch_database() as url:
            store = await connect(url, 2)
            await store.migrate()
            await store.close()
            await ingest_and_transitions(url, pipelines, args.events, args.runs)


if __name__ == "__main__":
    asyncio.run(main())
