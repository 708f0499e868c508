"""The executor against its floor: the same work with and without orchestration.

In one run, side by side, each shape the median of N runs through the real service (embedded
Tansu broker, PostgreSQL), triggered by dataset.ready on Kafka, until the run's success is
committed; each task runs `true` and asks for a quarter core, so four run at once on two:

  (a) a chain of 50 dependent tasks: total time, per-task overhead;
  (b) 200 independent tasks at concurrency 4: tasks per second;
  (c) both shapes as a bare asyncio.create_subprocess_exec loop (the floor), and the ratios;
  (d) with --remote, both shapes again through `executor: remote` and two `tributary worker`
      processes of two slots each.

Also the hop inside the chain: a task's process ended -> its successor's process started (as
their executors report them, to the millisecond), and PostgreSQL statements per task.

    .venv/bin/python bench/executor.py [--repeat 5] [--remote] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from harness import Running, running_service
from scratch import scratch_database

from service.observability import configure_logging
from service.store import connect

CHAIN, FAN, CONCURRENCY = 50, 200, 4
QUARTER_CORE = "resources: {cpu_cores: 0.25}"


def spec(name: str, tasks: int, chained: bool, remote: bool) -> str:
    executor = ", executor: remote" if remote else ""
    lines = [
        f"id: {name}",
        f"triggers: {{datasets: [{{dataset: {name}_ready}}]}}",
        "tasks:",
    ]
    for i in range(tasks):
        requires = f", requires: [t{i - 1}]" if chained and i else ""
        lines.append(f'  - {{id: t{i}, command: ["true"], {QUARTER_CORE}{executor}{requires}}}')
    return "\n".join(lines) + "\n"


async def floor(tasks: int, concurrency: int) -> float:
    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with slots:
            process = await asyncio.create_subprocess_exec("true")
            await process.wait()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(tasks)))
    return time.perf_counter() - started


async def drive(service: Running, shapes: list[str], repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {shape: [] for shape in shapes}
    for i in range(repeat):
        for shape in shapes:
            started = time.perf_counter()
            await service.announce(f"{shape}_ready", range(i, i + 1))
            await service.until_ended(i + 1, shape)
            times[shape].append(time.perf_counter() - started)
    return times


async def hops(service: Running, pipeline: str) -> list[float]:
    rows = await service.conn.fetch(
        """
        SELECT extract(epoch FROM n.started_at - p.ended_at) * 1000 AS gap
        FROM task_instances p
        JOIN task_instances n
          ON n.run_id = p.run_id AND n.task_id = 't' || (substr(p.task_id, 2)::int + 1)
        JOIN runs r ON r.run_id = p.run_id AND r.pipeline_id = $1""",
        pipeline,
    )
    return sorted(float(r["gap"]) for r in rows)


def start_workers(work: Path, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    """Two `tributary worker` processes of two slots each, on the service's broker."""
    workers = []
    for i in range(2):
        worker_env = {
            **os.environ,
            **env,
            "TRIBUTARY_INSTANCE_ID": f"bench-worker-{i}",
            "TRIBUTARY_ATTEMPT_STATE_DIR": str(work / f"worker-{i}"),
            "TRIBUTARY_MAX_PARALLEL_TASKS": str(CONCURRENCY // 2),
        }
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "service", "worker"],
                env=worker_env,
                stdout=subprocess.DEVNULL,
                stderr=(work / f"worker-{i}.log").open("wb"),
            )
        )
    return workers


async def measure(repeat: int, remote: bool, statements: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pipelines = work / "pipelines"
        pipelines.mkdir()
        shapes = {"chain": (CHAIN, True, False), "fan": (FAN, False, False)}
        if remote:
            shapes |= {"rchain": (CHAIN, True, True), "rfan": (FAN, False, True)}
        for name, (tasks, chained, is_remote) in shapes.items():
            (pipelines / f"{name}.yaml").write_text(spec(name, tasks, chained, is_remote))
        async with scratch_database() as url:
            store = await connect(url, 2)
            await store.migrate()
            await store.close()
            settings = {"MAX_PARALLEL_TASKS": str(CONCURRENCY)}
            async with running_service(url, pipelines, work, settings) as service:
                workers = []
                if remote:
                    workers = start_workers(work, service.env)
                try:
                    before, by_before = service.statements, service.by_statement.copy()
                    local = await drive(service, ["chain", "fan"], repeat)
                    local_statements = service.statements - before
                    if statements:
                        print_statements(service.by_statement - by_before, repeat * (CHAIN + FAN))
                    remote_times = (
                        await drive(service, ["rchain", "rfan"], repeat) if remote else {}
                    )
                    chain_hops = await hops(service, "chain")
                finally:
                    for worker in workers:
                        worker.terminate()
                        worker.wait(timeout=30)
    figures = {
        "chain_s": statistics.median(local["chain"]),
        "chain_min_s": min(local["chain"]),
        "fan_s": statistics.median(local["fan"]),
        "fan_min_s": min(local["fan"]),
        "hop_p50_ms": chain_hops[len(chain_hops) // 2],
        "hop_p90_ms": chain_hops[int(len(chain_hops) * 0.9)],
        "hop_p99_ms": chain_hops[min(len(chain_hops) - 1, int(len(chain_hops) * 0.99))],
        "hop_mean_ms": statistics.fmean(chain_hops),
        "statements_per_task": local_statements / (repeat * (CHAIN + FAN)),
        "floor_chain_s": statistics.median([await floor(CHAIN, 1) for _ in range(repeat)]),
        "floor_fan_s": statistics.median([await floor(FAN, CONCURRENCY) for _ in range(repeat)]),
    }
    if remote:
        figures["remote_chain_s"] = statistics.median(remote_times["rchain"])
        figures["remote_fan_s"] = statistics.median(remote_times["rfan"])
    for shape in ("chain", "fan", "remote_chain", "remote_fan"):
        if f"{shape}_s" in figures:
            base = "floor_chain_s" if "chain" in shape else "floor_fan_s"
            figures[f"{shape}_ratio"] = figures[f"{shape}_s"] / figures[base]
    return figures


def print_statements(counts: Counter[str], tasks: int) -> None:
    for name, count in counts.most_common():
        print(f"{count / tasks:6.2f}  {name}", file=sys.stderr)


def report(f: dict[str, float], repeat: int) -> None:
    print(f"medians of {repeat}; floor = a bare asyncio.create_subprocess_exec loop")
    print(
        f"(a) chain of {CHAIN}: {f['chain_s']:.3f} s, floor {f['floor_chain_s']:.3f} s, "
        f"ratio {f['chain_ratio']:.1f}x (min {f['chain_min_s']:.3f} s); per-task overhead "
        f"{(f['chain_s'] - f['floor_chain_s']) / CHAIN * 1000:.1f} ms"
    )
    print(
        f"(b) {FAN} independent, concurrency {CONCURRENCY}: {FAN / f['fan_s']:.0f} tasks/s "
        f"({f['fan_s']:.3f} s, min {f['fan_min_s']:.3f} s), "
        f"floor {FAN / f['floor_fan_s']:.0f} tasks/s, "
        f"ratio {f['fan_ratio']:.1f}x"
    )
    if "remote_chain_s" in f:
        print(
            f"(d) remote, two workers: chain {f['remote_chain_s']:.3f} s "
            f"({f['remote_chain_ratio']:.1f}x), fan {FAN / f['remote_fan_s']:.0f} tasks/s "
            f"({f['remote_fan_ratio']:.1f}x)"
        )
    print(
        f"hop in the chain (process ended -> successor's process started): "
        f"p50 {f['hop_p50_ms']:.1f} ms, p90 {f['hop_p90_ms']:.1f} ms, "
        f"p99 {f['hop_p99_ms']:.1f} ms, mean {f['hop_mean_ms']:.1f} ms; "
        f"{f['statements_per_task']:.1f} PostgreSQL statements per task"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--remote", action="store_true", help="also through two workers")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--statements", action="store_true", help="also each statement's count per local task"
    )
    args = parser.parse_args()
    configure_logging("WARNING")
    figures = await measure(args.repeat, args.remote, args.statements)
    if args.json:
        print(json.dumps(figures))
    else:
        report(figures, args.repeat)


if __name__ == "__main__":
    asyncio.run(main())
