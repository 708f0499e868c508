"""What the attempt keeper and its client share: where things are on disk, the messages between
them, an ended attempt as JSON, and how a process group left behind is killed safely.

On disk, under the keeper's directory (``attempt_state_dir``)::

    keeper.sock      the keeper listens here (one client at a time: the owning service)
    keeper.lock      held by the live keeper: one keeper per directory
    owner.lock       held by the live service that owns the directory: one owner at a time
    keeper.log       the keeper's own log
    attempts/<run>%2F<task>%2F<attempt>.journal
                     one attempt's journal, JSON lines appended as they happen: what runs,
                     where its output goes and when it started; each process group as it
                     starts ("pid starttime": cleanup, command, rollback, in turn), killed
                     if its keeper dies; how it ended, written before anyone is told. One
                     file, appended: no directories made and removed per attempt. A line
                     cut short by a death half way is ignored.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

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


JOURNALS = "attempts"
JOURNAL_SUFFIX = ".journal"


def journal_path(root: Path, key: AttemptKey) -> Path:
    return root / JOURNALS / f"{quote(str(key), safe='')}{JOURNAL_SUFFIX}"


def journal_key(path: Path) -> AttemptKey:
    return AttemptKey.parse(unquote(path.name.removesuffix(JOURNAL_SUFFIX)))


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


class Journal:
    """One attempt's journal, open for appending while it runs.

    Not synced to the disk, on purpose: it outlives the death of a process (the service's, the
    keeper's), and the kernel's page cache outlives both. A machine that crashes takes its
    attempts with it; their leases run out and they are retried as lost, whatever the disk
    kept. (An fsync cost 4 to 5 ms per record on the hop of every task.)
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def start(cls, path: Path, launch: dict[str, Any]) -> Journal:
        """A new journal, its first line what runs."""
        path.parent.mkdir(parents=True, exist_ok=True)
        journal = cls(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
        journal._append({"launch": launch})
        return journal

    @classmethod
    def reopen(cls, path: Path) -> Journal:
        """An existing journal, to append to."""
        return cls(os.open(path, os.O_WRONLY | os.O_APPEND))

    def group(self, pid: int) -> None:
        """Remember the group running now, with its leader's start time (pids are reused)."""
        self._append({"group": [pid, start_time(pid)]})

    def end(self, ended: dict[str, Any]) -> None:
        self._append({"ended": ended})
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _append(self, entry: dict[str, Any]) -> None:
        if self._fd is None:
            raise ValueError("the journal is closed")
        os.write(self._fd, orjson.dumps(entry) + b"\n")  # one write: whole lines, in order


@dataclass(frozen=True, slots=True)
class JournalRead:
    """What a journal says: the launch record, the last group started, how it ended."""

    launch: dict[str, Any]
    group: tuple[int, int | None] | None
    ended: dict[str, Any] | None


def read_journal(path: Path) -> JournalRead | None:
    """None when there is no journal, or not even its first line."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    launch, group, ended = None, None, None
    for line in data.split(b"\n")[:-1]:  # what follows the last newline was cut short
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if "launch" in entry:
            launch = entry["launch"]
        elif "group" in entry:
            group = (int(entry["group"][0]), entry["group"][1])
        elif "ended" in entry:
            ended = entry["ended"]
    return None if launch is None else JournalRead(launch, group, ended)


def kill_recorded_group(path: Path) -> bool:
    """SIGKILL the last group recorded in the journal at ``path`` if it is still the same
    group; True if a signal was sent."""
    found = read_journal(path)
    if found is None or found.group is None:
        return False
    pid, started = found.group
    now = start_time(pid)
    if now is not None and now != started:
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
