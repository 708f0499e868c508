"""Cost per task as the queue grows: N runs announced at once, drained by the real service.

Three pipelines of 1, 2 and 3 chained `true` tasks, the runs spread over them; every run is
admitted at once (max_active_runs high), so N runs put up to N tasks in the queue together.
Concurrency 4 (each task asks for a quarter core, so four run at once on two cores),
Redis off. For each N: the time from the first
announcement to the last run's success, tasks per second, and the service's RSS at the end
(the process running it: this one) when it started and at the end. The curve should stay
flat.

    .venv/bin/python bench/queue_growth.py [--runs 100 1000 10000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from harness import running_service
from scratch import scratch_database

from service.observability import configure_logging
from service.store import connect

CHAINS = (1, 2, 3)


def chain_spec(length: int) -> str:
    lines = [
        f"id: chain{length}",
        "max_active_runs: 100000",
        f"triggers: {{datasets: [{{dataset: ready{length}}}]}}",
        "tasks:",
    ]
    for i in range(length):
        requires = f", requires: [t{i - 1}]" if i else ""
        resources = "resources: {cpu_cores: 0.25}"
        lines.append(f'  - {{id: t{i}, command: ["true"], {resources}{requires}}}')
    return "\n".join(lines) + "\n"


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def drain(runs: int, statements: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pipelines = work / "pipelines"
        pipelines.mkdir()
        for length in CHAINS:
            (pipelines / f"chain{length}.yaml").write_text(chain_spec(length))
        async with scratch_database() as url:
            store = await connect(url, 2)
            await store.migrate()
            await store.close()
            settings = {"MAX_PARALLEL_TASKS": "4"}
            async with running_service(url, pipelines, work, settings) as service:
                idle = current_rss_mb()
                per = [runs // len(CHAINS) + (i < runs % len(CHAINS)) for i in range(len(CHAINS))]
                tasks = sum(n * length for n, length in zip(per, CHAINS, strict=True))
                started = time.perf_counter()
                for n, length in zip(per, CHAINS, strict=True):
                    await service.announce(f"ready{length}", range(n))
                await service.until_ended(runs)
                took = time.perf_counter() - started
                if statements:
                    for name, count in service.by_statement.most_common(25):
                        print(f"{count / tasks:6.2f}  {name}", file=sys.stderr)
                failed = await service.conn.fetchval(
                    "SELECT count(*) FROM runs WHERE state <> 'success'"
                )
                rss = current_rss_mb()
    if failed:
        raise SystemExit(f"{failed} of {runs} runs did not succeed")
    return {
        "runs": runs,
        "tasks": tasks,
        "seconds": took,
        "tasks_per_s": tasks / took,
        "rss_idle_mb": idle,
        "rss_mb": rss,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--statements", action="store_true", help="also each statement's count per task"
    )
    args = parser.parse_args()
    configure_logging("WARNING")
    figures = [await drain(n, args.statements) for n in args.runs]
    if args.json:
        print(json.dumps(figures))
        return
    base = figures[0]["tasks_per_s"]
    print("runs    tasks   seconds  tasks/s  vs first  RSS MB")
    for f in figures:
        print(
            f"{f['runs']:>6} {f['tasks']:>7} {f['seconds']:>9.2f} {f['tasks_per_s']:>8.0f} "
            f"{f['tasks_per_s'] / base:>8.2f} {f['rss_mb']:>7.0f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
