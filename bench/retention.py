"""Retention under load: the logs' sizes stay flat while runs keep coming.

Against the local PostgreSQL (a fresh database, dropped after), with the engine itself (no
broker): each round starts N runs of a 4-task diamond, claims and completes every task (each
move a transition row, a status event in the outbox, each completion an applied-event id),
marks the outbox sent (as the relay would), and lets the retention loop prune what is older
than the retention (seconds here, days in production); every few rounds it runs VACUUM, as
autovacuum would (about once a minute; the bench is shorter). Prints, every few rounds, each
log's rows and its size on disk (table and indexes): after the first rounds both stop growing.

    .venv/bin/python bench/retention.py [--rounds 60] [--runs 100] [--keep 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import asyncpg
from engine import DIAMOND, ready
from scratch import scratch_database

from service.engine.states import TaskState
from service.events import TaskCompleted, new_event
from service.loops.retention import Retention
from service.observability import configure_logging
from service.orchestrator.core import Orchestrator
from service.orchestrator.outgoing import Outgoing
from service.pipelines import PipelineRegistry
from service.store import connect
from service.store.records import ClaimBudget

TABLES = ("transitions", "processed_events", "outbox", "ignored_events")
VACUUM_EVERY = 5  # rounds


async def sizes(conn: asyncpg.Connection) -> dict[str, tuple[int, int]]:
    """table -> (rows, bytes on disk with its indexes)."""
    return {
        t: (
            int(await conn.fetchval(f"SELECT count(*) FROM {t}")),
            int(await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", t)),
        )
        for t in TABLES
    }


async def soak(
    url: str, pipelines: Path, rounds: int, runs: int, keep: float
) -> list[dict[str, object]]:
    store = await connect(url, 4)
    registry = PipelineRegistry(store)
    await registry.load(pipelines)
    outgoing = Outgoing("bench.status", "bench.requests", "urn:bench")
    core = Orchestrator.build(store=store, registry=registry, outgoing=outgoing, actor="bench")
    retention = Retention(store=store, keep=timedelta(seconds=keep), batch=1_000)
    conn = await asyncpg.connect(url)
    samples = []
    started = time.perf_counter()
    try:
        for r in range(rounds):
            await core.applier.apply([ready("bench_ready", r * runs + d) for d in range(runs)])
            while claims := await core.claimer.claim("bench-worker", ClaimBudget(500), 60):
                await core.applier.apply(
                    [
                        new_event(
                            TaskCompleted(c.run_id, c.task_id, c.attempt, TaskState.SUCCESS),
                            "urn:bench:worker",
                        )
                        for c in claims
                    ]
                )
            await conn.execute("UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL")
            await retention.run_burst()
            if r % VACUUM_EVERY == VACUUM_EVERY - 1:
                # What autovacuum does about once a minute: the space of pruned rows is
                # reused. The bench is shorter than autovacuum's naptime, so it asks itself.
                await conn.execute(f"VACUUM {', '.join(TABLES)}")
            if r % max(1, rounds // 10) == 0 or r == rounds - 1:
                at = time.perf_counter() - started
                samples.append({"round": r + 1, "seconds": at, **(await sizes(conn))})
    finally:
        await conn.close()
        await store.close()
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--runs", type=int, default=100, help="runs started per round")
    parser.add_argument("--keep", type=float, default=5.0, help="retention, in seconds")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        pipelines = Path(tmp)
        (pipelines / "diamond.yaml").write_text(DIAMOND)
        async with scratch_database() as url:
            store = await connect(url, 2)
            await store.migrate()
            await store.close()
            samples = await soak(url, pipelines, args.rounds, args.runs, args.keep)
    if args.json:
        print(json.dumps(samples))
        return
    print(f"{args.runs} diamond runs a round, retention {args.keep:g} s; rows / kB on disk")
    print("round  seconds " + " ".join(f"{t:>24}" for t in TABLES))
    for s in samples:
        cells = " ".join(f"{s[t][0]:>12,} {s[t][1] // 1024:>9,} kB" for t in TABLES)  # type: ignore[index]
        print(f"{s['round']:>5} {s['seconds']:>8.1f} {cells}")


if __name__ == "__main__":
    asyncio.run(main())
