"""What the attempt keeper and its client share: where things are on disk, the messages between
them, an ended attempt as JSON, and how a process group left behind is killed safely.

On disk, under the keeper's directory (``attempt_state_dir``)::

    keeper.sock      the keeper listens here (one client at a time: the owning service)
    keeper.lock      held by the live keeper: one keeper per directory
    owner.lock       held by the live service that owns the directory: one owner at a time
    keeper.log       the keeper's own log
    attempts/<run>/<task>/<attempt>/
        launch.json  what runs, where its output goes, when it started
        group        "pid starttime" of the process group running now (cleanup, command,
                     rollback, in turn): killed if its keeper dies
        outcome.json how it ended, written before anyone is told
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from service.clock import parse_timestamp, utc_timestamp
from service.engine.model import AttemptKey
from service.engine.states import TaskState
from service.execution.attempt import AttemptOutcome
from service.execution.process import ProcessExit

PROTOCOL = 1
SOCKET = "keeper.sock"
KEEPER_LOCK = "keeper.lock"
OWNER_LOCK = "owner.lock"
LOG = "keeper.log"
MAX_MESSAGE = 16 * 1024 * 1024  # bytes: a launch with its environment fits many times over


def attempt_dir(root: Path, key: AttemptKey) -> Path:
    return root / "attempts" / key.run_id / key.task_id / str(key.attempt)


@dataclass(frozen=True, slots=True)
class Ended:
    """How a kept attempt ended, and when it ran."""

    key: AttemptKey
    outcome: AttemptOutcome
    started_at: datetime
    ended_at: datetime

    def to_json(self) -> dict[str, Any]:
        done, result = self.outcome, self.outcome.result
        return {
            "key": str(self.key),
            "outcome": str(done.outcome),
            "retryable": done.retryable,
            "reason": done.reason,
            "cache_key": done.cache_key,
            "lost": done.lost,
            "exit_code": result.exit_code,
            "signal": result.signal,
            "error_snippet": result.error_snippet,
            "stderr_tail": result.stderr_tail,
            "timed_out": result.timed_out,
            "interrupted": result.interrupted,
            "task_result": done.task_result,
            "started_at": utc_timestamp(self.started_at),
            "ended_at": utc_timestamp(self.ended_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ended:
        result = ProcessExit(
            data["exit_code"],
            data["signal"],
            data["error_snippet"],
            data["stderr_tail"],
            data["timed_out"],
            data["interrupted"],
        )
        outcome = AttemptOutcome(
            result,
            TaskState(data["outcome"]),
            data["retryable"],
            data["reason"],
            data["cache_key"],
            data["lost"],
            data.get("task_result"),
        )
        return cls(
            AttemptKey.parse(data["key"]),
            outcome,
            parse_timestamp(data["started_at"]),
            parse_timestamp(data["ended_at"]),
        )


def encode(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message) + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    message = orjson.loads(line)
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ValueError(f"not a keeper message: {line[:200]!r}")
    return message


def write_atomically(path: Path, data: bytes) -> None:
    """Whole or not at all, even if the writer dies half way.

    Not synced to the disk, on purpose: these records outlive the death of a process (the
    service's, the keeper's), and the kernel's page cache outlives both. A machine that
    crashes takes its attempts with it; their leases run out and they are retried as lost,
    whatever the disk kept. An fsync here cost 4 to 5 ms per file on the hop of every task.
    """
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as handle:
        handle.write(data)
    partial.replace(path)


def record_group(directory: Path, pid: int) -> None:
    """Remember the group running now, with its leader's start time (pids are reused)."""
    write_atomically(directory / "group", f"{pid} {start_time(pid)}".encode())


def kill_recorded_group(directory: Path) -> bool:
    """SIGKILL the group recorded in ``directory`` if it is still the same group; True if a
    signal was sent."""
    try:
        pid_text, started = (directory / "group").read_text().split()
    except (OSError, ValueError):
        return False
    pid = int(pid_text)
    now = start_time(pid)
    if now is not None and str(now) != started:
        return False  # the pid is someone else's now: the group we knew is gone
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
        return True
    return False


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])
