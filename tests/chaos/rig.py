"""What the fault tests share: servers of their own they may stop or pause, and the checks
of the marked pipeline (every task instance ran to its end exactly once, never two copies at
once)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import aiohttp
import asyncpg

from service import devenv
from tests.support import ServiceProcess, eventually, ready

Deploy = Callable[..., Awaitable[ServiceProcess]]
MARKED_TASKS = ("first", "second", "third")


@dataclass
class PrivatePostgres:
    data_dir: Path
    port: int
    started: devenv.StartedProcesses = field(default_factory=devenv.StartedProcesses)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/tributary"

    def start(self) -> None:
        devenv.start_throwaway_postgres(self.data_dir, self.port, self.started)

    def stop(self) -> None:
        self.started.stop_all()  # pg_ctl stop -m fast


@dataclass
class PrivateBroker:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


@dataclass
class PrivateRedis:
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = devenv.start_redis(self.port, self.log_path)
        assert self.process is not None, "redis-server is not installed"

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def marked_triggers(
    count: int, first_day: date = date(2025, 1, 1)
) -> list[tuple[bytes | None, bytes]]:
    """One marked_ready record per run, for consecutive days."""
    days = [(first_day + timedelta(days=i)).isoformat() for i in range(count)]
    return [(b"marked_ready", ready("marked_ready", day).to_bytes()) for day in days]


async def ended_runs(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT state, count(*) AS n FROM runs GROUP BY state")
    return {row["state"]: row["n"] for row in rows}


async def succeeded(conn: asyncpg.Connection, at_least: int, timeout: float) -> None:
    """Wait until ``at_least`` runs succeeded; a failed run ends the wait (and the test)."""
    runs = await eventually(
        lambda: ended_runs(conn),
        lambda runs: runs.get("success", 0) >= at_least or "failed" in runs,
        timeout,
        f"{at_least} runs to succeed",
    )
    assert "failed" not in runs, runs


async def check_marked(conn: asyncpg.Connection, marks: Path, runs: int) -> None:
    """Every run succeeded; each task instance ran to its end exactly once; no two copies of
    one ever ran at once; nothing is left running."""
    ended = await ended_runs(conn)
    assert ended == {"success": runs}, ended
    assert not (marks / "overlaps").exists(), (marks / "overlaps").read_text()
    run_ids = [r["run_id"] for r in await conn.fetch("SELECT run_id FROM runs")]
    for run_id in run_ids:
        for task_id in MARKED_TASKS:
            lines = (marks / f"{run_id}-{task_id}").read_text().split()
            assert lines.count("end") == 1, (run_id, task_id, lines)
    running = await conn.fetch(
        "SELECT run_id, task_id, attempt FROM task_instances WHERE state = 'running'"
    )
    assert not running, [dict(row) for row in running]


def report(scenario: str, **figures: object) -> None:
    """One line of figures per scenario (shown with ``-s``): what the closing notes quote."""
    print(f"chaos {scenario}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))


async def readiness(service: ServiceProcess) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{service.http_port()}/readyz"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, (await response.json())["checks"]
