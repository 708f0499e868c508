"""The durable engine under load, against the local PostgreSQL (a fresh database, dropped after).

1. Trigger ingestion: N dataset.ready events -> N runs, applied in consumer-sized batches.
2. State transitions per second: runs of a 4-task diamond driven to the end by batched claims
   and completions, every transition durable (guarded update + log row + outbox row).
(The executor against its floor, and task-to-task latency in the service: bench/executor.py.)

    .venv/bin/python bench/engine.py [--events 10000] [--runs 2000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


async def ingest_and_transitions(
    url: str, pipelines: Path, events: int, runs: int
) -> dict[str, float]:
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
    ingestion = time.perf_counter() - started

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
    return {
        "events": events,
        "ingestion_s": ingestion,
        "events_per_s": events / ingestion,
        "transitions": transitions,
        "transitions_s": elapsed,
        "transitions_per_s": transitions / elapsed,
        "runs_finished": finished,
    }


def report(f: dict[str, float]) -> None:
    print(
        f"trigger ingestion: {f['events']:.0f} dataset.ready -> runs in {f['ingestion_s']:.2f} s "
        f"= {f['events_per_s']:,.0f} events/s ({BATCH} per transaction)"
    )
    print(
        f"state transitions: {f['transitions']:,.0f} in {f['transitions_s']:.2f} s = "
        f"{f['transitions_per_s']:,.0f}/s ({f['runs_finished']:.0f} diamond runs to success; "
        f"claims and completions {BATCH} per transaction)"
    )


async def main() -> None:
    from service.observability import configure_logging

    configure_logging("WARNING")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
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
            figures = await ingest_and_transitions(url, pipelines, args.events, args.runs)
    if args.json:
        print(json.dumps(figures))
    else:
        report(figures)


if __name__ == "__main__":
    asyncio.run(main())
