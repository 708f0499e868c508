"""Soak: the service killed with SIGKILL again and again while it works; every run must succeed,
every task instance must run to its end exactly once, never two copies at once.

Starts its own Tansu broker, a fresh database on the local PostgreSQL (dropped afterwards) and
`tributary serve` on the marked pipeline of the tests (three chained tasks that leave marks
and hold a lock while they work). Each kill lands at a random moment while attempts run; every
tenth restart comes later than a lease, so the keeper stops what ran and it is retried as lost.
Prints the restart times and what was taken over, stopped and retried; exits 1 if a run did not
succeed, a task instance ran to its end twice or not at all, or two copies overlapped.

    .venv/bin/python bench/soak.py [--kills 100] [--runs 200] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from scratch import create_database, drop_database

from service import devenv
from service.events import DatasetReady, new_event

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "tests" / "pipelines" / "marked.yaml"
TASKS = ("first", "second", "third")
LEASE = 3.0  # seconds
TASK_SECONDS = 4.0  # longer than a lease: a late restart finds attempts stopped
LATE_EVERY = 10  # every tenth restart comes after a lease
RUNNING = "SELECT count(*) FROM task_instances WHERE state = 'running'"
JUST_STARTED = """
    SELECT count(*) FROM task_instances
    WHERE state = 'running' AND started_at > now() - interval '0.5 seconds'
"""
LOST = "SELECT coalesce(sum(lost_attempts), 0) FROM task_instances"
UNENDED = "SELECT count(*) FROM runs WHERE state NOT IN ('success', 'failed', 'cancelled')"


class Service:
    """`tributary serve` as a subprocess; its log lines, parsed."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "serve"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def events(self, name: str) -> list[dict[str, object]]:
        found = []
        for line in self.log_path.read_bytes().splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if entry.get("event") == name:
                found.append(entry)
        return found

    async def started(self, before: int, within: float = 60) -> None:
        """Wait for one more `service.started` line than ``before``."""
        deadline = time.monotonic() + within
        while len(self.events("service.started")) <= before:
            if self.process is not None and self.process.poll() is not None:
                raise SystemExit(f"the service exited: see {self.log_path}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the service did not start within {within:.0f} s")
            await asyncio.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


async def until(
    conn: asyncpg.Connection, query: str, accept: Callable[[Any], bool], within: float
) -> Any:
    deadline = time.monotonic() + within
    while not accept(value := await conn.fetchval(query)):
        if time.monotonic() > deadline:
            raise SystemExit(f"waited {within:.0f} s for {query!r}: {value}")
        await asyncio.sleep(0.05)
    return value


async def produce_triggers(bootstrap: str, topic: str, runs: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(runs):
            day = (date(2025, 1, 1) + timedelta(days=i)).isoformat()
            event = new_event(DatasetReady("marked_ready", day), "urn:bench:soak")
            await producer.send(topic, event.to_bytes(), key=b"marked_ready")
        await producer.flush()
    finally:
        await producer.stop()


async def soak(service: Service, database_url: str, args: argparse.Namespace) -> dict[str, float]:
    rng = random.Random(args.seed)
    conn = await asyncpg.connect(database_url)
    restarts: list[float] = []
    kills = late = 0
    started_at = time.monotonic()
    try:
        await until(conn, "SELECT count(*) FROM runs", lambda n: n == args.runs, 120)
        for kill in range(args.kills):
            await until(conn, f"SELECT ({RUNNING}) > 0 OR ({UNENDED}) = 0", bool, 120)
            if not await conn.fetchval(UNENDED):
                break  # the work ran out before the kills did
            is_late = (kill + 1) % LATE_EVERY == 0
            if is_late:  # with an attempt that has longer to go than the service is away
                await until(conn, f"SELECT ({JUST_STARTED}) > 0 OR ({UNENDED}) = 0", bool, 120)
            else:
                await asyncio.sleep(rng.uniform(0, 1.0))
            seen = len(service.events("service.started"))
            service.kill()
            kills += 1
            killed_at = time.monotonic()
            if is_late:
                late += 1
                await asyncio.sleep(LEASE * 1.5)
            service.start()
            await service.started(seen)
            restarts.append(time.monotonic() - killed_at)
        await until(conn, UNENDED, lambda n: n == 0, 600)
        wall = time.monotonic() - started_at
        return {
            "kills": kills,
            "late": late,
            "wall": wall,
            "restart_median": statistics.median(restarts) if restarts else 0.0,
            "restart_min": min(restarts, default=0.0),
            "restart_max": max(restarts, default=0.0),
            "lost": int(
                await conn.fetchval("SELECT coalesce(sum(lost_attempts), 0) FROM task_instances")
            ),
            "succeeded": int(
                await conn.fetchval("SELECT count(*) FROM runs WHERE state = 'success'")
            ),
        }
    finally:
        await conn.close()


def check_marks(marks: Path, run_ids: list[str]) -> list[str]:
    """What went wrong with the marks: overlaps, and task instances not ended exactly once."""
    problems = []
    if (marks / "overlaps").exists():
        problems.append("overlaps: " + (marks / "overlaps").read_text().strip())
    for run_id in run_ids:
        for task_id in TASKS:
            path = marks / f"{run_id}-{task_id}"
            ends = path.read_text().split().count("end") if path.exists() else 0
            if ends != 1:
                problems.append(f"{run_id}/{task_id} ran to its end {ends} times")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tributary-soak-"))
    marks = work / "marks"
    marks.mkdir()
    pipelines = work / "pipelines"
    pipelines.mkdir()
    shutil.copy(PIPELINE, pipelines)
    port = devenv.free_port()
    broker = devenv.start_tansu(port, work / "tansu.log")
    bootstrap = f"127.0.0.1:{port}"
    database_url = asyncio.run(create_database("tributary_soak"))
    prefix = f"soak-{secrets.token_hex(3)}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")},
        "TRIBUTARY_ENV": "bench",
        "TRIBUTARY_DATABASE_URL": database_url,
        "TRIBUTARY_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TRIBUTARY_KAFKA_ENABLE_IDEMPOTENCE": "false",  # Tansu has no idempotent producers
        "TRIBUTARY_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "TRIBUTARY_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "TRIBUTARY_KAFKA_CONSUMER_GROUP": f"{prefix}-group",
        "TRIBUTARY_TOPIC_TRIGGERS": f"{prefix}.triggers",
        "TRIBUTARY_TOPIC_COMPLETIONS": f"{prefix}.completions",
        "TRIBUTARY_TOPIC_STATUS": f"{prefix}.status",
        "TRIBUTARY_TOPIC_DEAD_LETTER": f"{prefix}.dead-letter",
        "TRIBUTARY_TOPIC_REQUESTS": f"{prefix}.requests",
        "TRIBUTARY_REDIS_URL": "",
        "TRIBUTARY_PIPELINES_DIR": str(pipelines),
        "TRIBUTARY_TASK_LOG_DIR": str(work / "logs"),
        "TRIBUTARY_ATTEMPT_STATE_DIR": str(work / "attempts"),
        "TRIBUTARY_LEASE_TTL_SECONDS": str(LEASE),
        "TRIBUTARY_TIMER_POLL_INTERVAL_SECONDS": "0.2",
        "TRIBUTARY_MAX_PARALLEL_TASKS": "8",
        "TRIBUTARY_SHUTDOWN_DRAIN_SECONDS": "1",
        "TRIBUTARY_HTTP_PORT": "0",
        "MARKS": str(marks),
        "MARK_SECONDS": str(TASK_SECONDS),
    }
    service = Service(env, work / "service.log")
    try:
        service.start()
        asyncio.run(service.started(0))
        asyncio.run(produce_triggers(bootstrap, f"{prefix}.triggers", args.runs))
        figures = asyncio.run(soak(service, database_url, args))
        run_ids = asyncio.run(_run_ids(database_url))
    finally:
        service.stop()
        broker.terminate()
        broker.wait(timeout=10)
        asyncio.run(drop_database(database_url))
    taken = sum(int(str(e["still_running"])) for e in service.events("attempts.taken_over"))
    problems = check_marks(marks, run_ids)
    if figures["succeeded"] != args.runs:
        problems.append(f"{figures['succeeded']} of {args.runs} runs succeeded")
    print(
        f"soak (seed {args.seed}): {figures['kills']:.0f} kills ({figures['late']:.0f} later than "
        f"a lease) over {args.runs} runs of 3 tasks, {figures['wall']:.0f} s"
    )
    print(
        f"  kill -> restarted: median {figures['restart_median']:.2f} s, "
        f"min {figures['restart_min']:.2f} s, max {figures['restart_max']:.2f} s"
    )
    print(
        f"  attempts taken over while running: {taken}; stopped and retried as lost: "
        f"{figures['lost']:.0f}"
    )
    print(f"  runs succeeded: {figures['succeeded']:.0f}/{args.runs}; problems: {len(problems)}")
    for problem in problems[:20]:
        print(f"    {problem}")
    if problems:
        print(f"  logs and marks kept in {work}")
        raise SystemExit(1)
    shutil.rmtree(work, ignore_errors=True)


async def _run_ids(database_url: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        return [row["run_id"] for row in await conn.fetch("SELECT run_id FROM runs")]
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
