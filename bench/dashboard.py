"""The dashboard's pages on a long history: seeds a fresh database with RUNS runs and about
ATTEMPTS task attempts (one pipeline of 50 tasks run on 200 batch dates, the rest spread over
pipelines of about 10 tasks), then times each page and read, a fresh request each time, from
the request to the last byte of the answer (median and min of --repeat).

    .venv/bin/python bench/dashboard.py [--runs 100000] [--attempts 1000000] [--repeat 5]

Targets (issue #13): the pipelines page and a run page under 300 ms; the heat map of 50
tasks x 60 dates under 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from scratch import scratch_database

from service.dashboard.web import make_web_app
from service.pipelines import PipelineRegistry
from service.store import Store, connect

WIDE_TASKS = 50
WIDE_DATES = 200
PIPELINES = 20

SEEDED = "CREATE TEMP TABLE seeded (pipeline_id text, spec_hash text, tasks text[], runs int)"
FILL_SEEDED = """
INSERT INTO seeded
SELECT p, h, string_to_array(t, ','), n FROM unnest($1::text[], $2::text[], $3::text[], $4::int[])
    AS s(p, h, t, n)
"""
RUNS = """
INSERT INTO runs (run_id, pipeline_id, spec_hash, batch_date, trigger_key, state, params, trace_id,
                  created_at, started_at, ended_at, updated_at, deadline_at)
SELECT s.pipeline_id || '-' || g, s.pipeline_id, s.spec_hash, date '2000-01-01' + g,
       'dataset:bench:' || g, CASE WHEN g % 17 = 0 THEN 'failed' ELSE 'success' END, '{}',
       md5(s.pipeline_id || g), t, t + interval '1 second', t + (30 + g % 90) * interval '1 second',
       t, t + interval '6 hours'
FROM seeded AS s, generate_series(1, s.runs) AS g,
     LATERAL (SELECT now() - (s.runs - g) * interval '1 hour' AS t) AS at
"""
TASKS = """
INSERT INTO task_instances (run_id, task_id, state, attempt, queued_at, started_at, ended_at,
                            exit_code, run_created_at)
SELECT r.run_id, task_id, r.state, 1, r.started_at, r.started_at + n * interval '2 seconds',
       r.started_at + (2 * n + 1 + (n * 7 + length(r.run_id)) % 20) * interval '1 second',
       CASE r.state WHEN 'success' THEN 0 ELSE 1 END, r.created_at
FROM runs AS r JOIN seeded AS s USING (pipeline_id),
     unnest(s.tasks) WITH ORDINALITY AS t(task_id, n)
"""
ATTEMPTS = """
INSERT INTO task_attempts (run_id, task_id, attempt, state, worker_id, started_at, ended_at,
                           exit_code)
SELECT run_id, task_id, attempt, state, 'bench', started_at, ended_at, exit_code
FROM task_instances
"""
TRANSITIONS = """
INSERT INTO transitions (at, run_id, task_id, attempt, from_state, to_state, reason, actor)
SELECT r.created_at, r.run_id, NULL, NULL, NULL, 'queued', 'bench_ready is ready', 'bench'
FROM runs AS r
UNION ALL
SELECT t.ended_at, t.run_id, t.task_id, 1, 'running', t.state, 'attempt 1 ended', 'bench'
FROM task_instances AS t
"""


def pipeline_yaml(pipeline_id: str, tasks: int, sla: bool) -> str:
    """Chains of 10 side by side (task i requires task i - 10): a run graph to lay out."""
    lines = [f"id: {pipeline_id}", "max_active_runs: 100000", "triggers: {manual: true}"]
    if sla:
        lines.append("sla: {deadline: 6h}")
    lines.append("tasks:")
    for i in range(tasks):
        requires = f", requires: [t{i - 10:02d}]" if i >= 10 else ""
        lines.append(f'  - {{id: t{i:02d}, command: ["true"]{requires}}}')
    return "\n".join(lines) + "\n"


async def seed(url: str, directory: Path, runs: int, attempts: int) -> PipelineRegistry:
    wide_runs = min(WIDE_DATES, runs // 2)
    rest = max(runs - wide_runs, 1)
    per_run = max(1, math.ceil((attempts - wide_runs * WIDE_TASKS) / rest))
    sizes = {"wide": (WIDE_TASKS, wide_runs)}
    for number in range(1, PIPELINES):
        share = rest // (PIPELINES - 1) + (1 if number <= rest % (PIPELINES - 1) else 0)
        sizes[f"p{number:02d}"] = (per_run, share)
    for pipeline_id, (tasks, _) in sizes.items():
        sla = pipeline_id in ("wide", "p01", "p02")
        (directory / f"{pipeline_id}.yaml").write_text(pipeline_yaml(pipeline_id, tasks, sla))
    store = await connect(url, 2)
    await store.migrate()
    registry = PipelineRegistry(store)
    loaded = await registry.load(directory)
    assert not loaded.problems, loaded.problems
    await store.close()
    conn = await asyncpg.connect(url)
    ids = sorted(sizes)
    pipelines = [registry.current[p] for p in ids]
    await conn.execute(SEEDED)
    await conn.execute(
        FILL_SEEDED,
        ids,
        [p.spec_hash for p in pipelines],
        [",".join(t.id for t in p.spec.tasks) for p in pipelines],
        [sizes[p][1] for p in ids],
    )
    for name, sql in (
        ("runs", RUNS),
        ("tasks", TASKS),
        ("attempts", ATTEMPTS),
        ("history", TRANSITIONS),
    ):
        started = time.perf_counter()
        await conn.execute(sql)
        print(f"  seeded {name} in {time.perf_counter() - started:.1f} s", flush=True)
    await conn.execute("VACUUM ANALYZE")
    counts = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM task_attempts) AS a,"
        " (SELECT count(*) FROM transitions) AS t"
    )
    await conn.close()
    print(
        f"history: {counts['runs']:,} runs, {counts['a']:,} task attempts, "
        f"{counts['t']:,} transitions, {len(ids)} pipelines"
    )
    return registry


async def serve(url: str, directory: Path) -> tuple[web.AppRunner, Store, int]:
    store = await connect(url, 10)
    registry = PipelineRegistry(store)
    await registry.load(directory)

    async def ready() -> dict[str, Any]:
        return {}

    runner = web.AppRunner(make_web_app(store, ready, None, registry), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = runner.addresses[0][1]
    return runner, store, port


async def timed(session: aiohttp.ClientSession, url: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat + 1):  # the first warms the connection and the caches
        started = time.perf_counter()
        async with session.get(url) as response:
            await response.read()
            assert response.status == 200, (url, response.status, await response.text())
        times.append((time.perf_counter() - started) * 1000)
    return times[1:]


async def main() -> None:
    from service.observability import configure_logging

    configure_logging("WARNING")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        async with scratch_database("tributary_bench_dashboard") as url:
            await seed(url, directory, args.runs, args.attempts)
            runner, store, port = await serve(url, directory)
            conn = await asyncpg.connect(url)
            wide_run = await conn.fetchval(
                "SELECT run_id FROM runs WHERE pipeline_id = 'wide' "
                "ORDER BY created_at DESC LIMIT 1"
            )
            narrow_run = await conn.fetchval(
                "SELECT run_id FROM runs WHERE pipeline_id = 'p01' ORDER BY created_at LIMIT 1"
            )
            await conn.close()
            pages = {
                "pipelines page /": "/",
                "pipeline page + heat map 50 x 60": "/pipelines/wide?dates=60",
                "heat map API 50 x 60": "/api/pipelines/wide/heatmap?dates=60",
                "run page, 50 tasks": f"/runs/{wide_run}",
                "run page, oldest run of p01": f"/runs/{narrow_run}",
                "attempt page": f"/runs/{wide_run}/tasks/t25",
                "runs page": "/runs?pipeline=p01",
                "datasets page": "/datasets",
            }
            print(f"\n{'page':38} {'median ms':>10} {'min ms':>8}  (of {args.repeat})")
            try:
                async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
                    for name, path in pages.items():
                        times = await timed(session, path, args.repeat)
                        print(f"{name:38} {statistics.median(times):10.1f} {min(times):8.1f}")
            finally:
                await runner.cleanup()
                await store.close()


if __name__ == "__main__":
    asyncio.run(main())
