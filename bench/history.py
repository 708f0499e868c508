"""Claims and completions with a long history: as fast as on an empty database.

Against the local PostgreSQL (fresh databases, dropped after), with the engine itself: the
same work is timed on an empty database and on one holding a history (by default 100,000
ended runs of 10 tasks: 1,000,000 task instances, 1,000,000 attempts, 1,100,000 transitions).
The work: runs of a 4-task diamond driven one task at a time (claim one, complete it), each
claim and each completion its own transaction, timed one by one.

    .venv/bin/python bench/history.py [--runs 100000] [--drive 100] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg
from engine import DIAMOND, ready
from scratch import scratch_database

from service.engine.states import TaskState
from service.events import TaskCompleted, new_event
from service.observability import configure_logging
from service.orchestrator.core import Orchestrator
from service.orchestrator.outgoing import Outgoing
from service.pipelines import PipelineRegistry
from service.store import connect
from service.store.records import ClaimBudget

TASKS_PER_RUN = 10
HISTORY = """
INSERT INTO pipeline_versions (pipeline_id, spec_hash, spec) VALUES ('old', 'h', '{}');
INSERT INTO runs (run_id, pipeline_id, spec_hash, batch_date, trigger_key, state, params,
                  trace_id, created_at, started_at, ended_at, updated_at)
SELECT 'old-' || g, 'old', 'h', date '1990-01-01' + g, 'old:' || g, 'success', '{}', md5(g::text),
       now() - interval '1 hour' * g, now() - interval '1 hour' * g,
       now() - interval '1 hour' * g + interval '1 minute', now()
FROM generate_series(1, $1) AS g;
INSERT INTO task_instances (run_id, task_id, state, attempt, queued_at, started_at, ended_at,
                            exit_code, run_created_at)
SELECT r.run_id, 't' || n, 'success', 1, r.started_at, r.started_at, r.ended_at, 0, r.created_at
FROM runs AS r, generate_series(1, $2) AS n WHERE r.pipeline_id = 'old';
INSERT INTO task_attempts (run_id, task_id, attempt, state, worker_id, started_at, ended_at,
                           exit_code)
SELECT run_id, task_id, 1, 'success', 'old', started_at, ended_at, 0
FROM task_instances WHERE run_id LIKE 'old-%';
INSERT INTO transitions (at, run_id, task_id, attempt, from_state, to_state, reason, actor)
SELECT ended_at, run_id, task_id, 1, 'running', 'success', '', 'old'
FROM task_instances WHERE run_id LIKE 'old-%'
UNION ALL SELECT created_at, run_id, NULL, NULL, NULL, 'queued', '', 'old'
FROM runs WHERE pipeline_id = 'old';
ANALYZE;
"""


async def seed(url: str, runs: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in HISTORY.strip().split(";\n"):
            if statement.strip():
                sql = statement.replace("$1", str(runs)).replace("$2", str(TASKS_PER_RUN))
                await conn.execute(sql)
    finally:
        await conn.close()


async def drive(url: str, pipelines: Path, runs: int) -> dict[str, float]:
    """Milliseconds per claim and per completion (p50), driving ``runs`` diamonds."""
    store = await connect(url, 4)
    registry = PipelineRegistry(store)
    await registry.load(pipelines)
    outgoing = Outgoing("bench.status", "bench.requests", "urn:bench")
    core = Orchestrator.build(store=store, registry=registry, outgoing=outgoing, actor="bench")
    await core.applier.apply([ready("bench_ready", 200_000 + d) for d in range(runs)])
    claims_ms, completions_ms = [], []
    try:
        while True:
            started = time.perf_counter()
            claims = await core.claimer.claim("bench-worker", ClaimBudget(1), 60)
            claims_ms.append((time.perf_counter() - started) * 1000)
            if not claims:
                break
            c = claims[0]
            done = TaskCompleted(c.run_id, c.task_id, c.attempt, TaskState.SUCCESS, exit_code=0)
            started = time.perf_counter()
            await core.applier.apply([new_event(done, "urn:bench:worker")])
            completions_ms.append((time.perf_counter() - started) * 1000)
    finally:
        await store.close()
    return {
        "claim_ms": statistics.median(claims_ms[:-1]),
        "completion_ms": statistics.median(completions_ms),
        "tasks": len(completions_ms),
    }


async def measure(history_runs: int, runs: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        pipelines = Path(tmp)
        (pipelines / "diamond.yaml").write_text(DIAMOND)
        for label, seeded in (("empty", 0), ("history", history_runs)):
            async with scratch_database() as url:
                store = await connect(url, 2)
                await store.migrate()
                await store.close()
                if seeded:
                    started = time.perf_counter()
                    await seed(url, seeded)
                    figures["seed_s"] = time.perf_counter() - started
                found = await drive(url, pipelines, runs)
                figures[f"{label}_claim_ms"] = found["claim_ms"]
                figures[f"{label}_completion_ms"] = found["completion_ms"]
    figures["claim_ratio"] = figures["history_claim_ms"] / figures["empty_claim_ms"]
    figures["completion_ratio"] = figures["history_completion_ms"] / figures["empty_completion_ms"]
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000, help="ended runs in the history")
    parser.add_argument("--drive", type=int, default=100, help="diamond runs driven")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    configure_logging("WARNING")
    f = await measure(args.runs, args.drive)
    if args.json:
        print(json.dumps(f))
        return
    print(
        f"history: {args.runs:,} runs, {args.runs * TASKS_PER_RUN:,} attempts "
        f"(seeded in {f['seed_s']:.0f} s); {args.drive} diamonds driven one task at a time"
    )
    print(
        f"claim p50: empty {f['empty_claim_ms']:.2f} ms, with history "
        f"{f['history_claim_ms']:.2f} ms ({f['claim_ratio']:.2f}x)"
    )
    print(
        f"completion p50: empty {f['empty_completion_ms']:.2f} ms, with history "
        f"{f['history_completion_ms']:.2f} ms ({f['completion_ratio']:.2f}x)"
    )


if __name__ == "__main__":
    asyncio.run(main())
