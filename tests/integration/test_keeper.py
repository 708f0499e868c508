"""The attempt keeper with real processes: attempts outlive the service that started them, are
taken over by the next one, and never run twice at once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from service.engine.model import AttemptKey
from service.engine.states import TaskState
from service.errors import ConfigError
from service.execution.keeper_client import KeeperClient
from service.execution.keeping import Journal, journal_path, read_journal
from service.execution.launch import Launch
from tests.support import ROOT, eventually, settled

KEY = AttemptKey("20261121-000000-abcd", "load", 1)


def launch(script: str) -> Launch:
    return Launch(
        argv=["sh", "-c", script],
        env={"PATH": "/usr/bin:/bin"},
        cwd=None,
        time_limit=None,
        grace=2.0,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


async def test_an_attempt_runs_in_the_keeper_and_is_forgotten_once_reported(
    tmp_path: Path,
) -> None:
    client = KeeperClient(tmp_path / "keeper", lease_seconds=30)
    try:
        inventory = await client.open()
        assert (inventory.running, inventory.ended) == ({}, [])
        ended = await client.run(KEY, launch("echo hello; exit 3"), tmp_path / "a.log")
        assert (ended.outcome.outcome, ended.outcome.result.exit_code) == (TaskState.FAILED, 3)
        assert ended.started_at <= ended.ended_at
        assert "hello" in (tmp_path / "a.log").read_text()
        journal = read_journal(journal_path(tmp_path / "keeper", KEY))
        assert journal is not None
        assert journal.ended == ended.to_json()
        await client.forget(KEY)
        await eventually(
            lambda: settled(journal_path(tmp_path / "keeper", KEY).exists()),
            lambda e: not e,
            5,
            "forgot",
        )
    finally:
        await client.close()


SERVICE = """
import asyncio, sys
from pathlib import Path
from service.engine.model import AttemptKey
from service.execution.keeper_client import KeeperClient
from service.execution.launch import Launch
async def main():
    client = KeeperClient(Path(sys.argv[1]), lease_seconds=30)
    await client.open()
    launch = Launch(["sh", "-c", sys.argv[2]], {"PATH": "/usr/bin:/bin"}, None, None, 2.0)
    await client.run(AttemptKey("20261121-000000-abcd", "load", 1), launch, Path(sys.argv[3]))
asyncio.run(main())
"""


async def test_a_service_killed_mid_attempt_leaves_it_running_for_the_next_to_take_over(
    tmp_path: Path,
) -> None:
    directory, marks = tmp_path / "keeper", tmp_path / "marks"
    script = f"echo started >> {marks}; sleep 1; echo done >> {marks}"
    service = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVICE, str(directory), script, str(tmp_path / "a.log"), cwd=ROOT
    )
    await eventually(lambda: _lines(marks), lambda n: n == ["started"], 20, "the attempt")
    service.kill()  # kill -9: the keeper and the attempt go on
    await service.wait()
    successor = KeeperClient(directory, lease_seconds=30)
    try:
        inventory = await successor.open()
        assert list(inventory.running) == [KEY]
        ended = await asyncio.wait_for(inventory.running[KEY], 10)
        assert ended.outcome.outcome is TaskState.SUCCESS
    finally:
        await successor.close()
    assert _lines_now(marks) == ["started", "done"]  # ran once, to its end


async def test_an_attempt_whose_lease_goes_unconfirmed_is_stopped_as_lost(
    tmp_path: Path,
) -> None:
    client = KeeperClient(tmp_path / "keeper", lease_seconds=1)
    try:
        await client.open()
        ended = await asyncio.wait_for(client.run(KEY, launch("sleep 30"), tmp_path / "a.log"), 15)
    finally:
        await client.close()
    assert ended.outcome.lost
    assert "its lease went unconfirmed for 1s" in ended.outcome.reason
    assert ended.outcome.result.interrupted


async def test_confirmed_leases_keep_an_attempt_running(tmp_path: Path) -> None:
    client = KeeperClient(tmp_path / "keeper", lease_seconds=1)
    try:
        await client.open()
        running = asyncio.create_task(client.run(KEY, launch("sleep 2.5"), tmp_path / "a.log"))
        while not running.done():
            await client.confirm([KEY], 1)
            await asyncio.sleep(0.3)
        ended = await running
    finally:
        await client.close()
    assert ended.outcome.outcome is TaskState.SUCCESS


async def test_if_the_keeper_dies_its_attempts_are_killed_and_lost(tmp_path: Path) -> None:
    directory, pid_file = tmp_path / "keeper", tmp_path / "pid"
    client = KeeperClient(directory, lease_seconds=30)
    try:
        await client.open()
        script = f"sleep 60 & echo $! > {pid_file}; wait"
        running = asyncio.create_task(client.run(KEY, launch(script), tmp_path / "a.log"))
        await eventually(lambda: settled(pid_file.exists()), bool, 10, "the attempt to start")
        sleeper = int(pid_file.read_text())
        os.kill(client.keeper_pid, signal.SIGKILL)
        ended = await asyncio.wait_for(running, 10)
        assert ended.outcome.lost
        assert "the attempt keeper) died" in ended.outcome.reason
        await eventually(lambda: _alive(sleeper), lambda a: not a, 5, "the group to be killed")
        # The next attempt starts a new keeper.
        again = AttemptKey(KEY.run_id, KEY.task_id, 2)
        ended = await client.run(again, launch("true"), tmp_path / "b.log")
        assert ended.outcome.outcome is TaskState.SUCCESS
    finally:
        await client.close()


async def test_a_new_keeper_kills_what_a_dead_one_left_running(tmp_path: Path) -> None:
    directory = tmp_path / "keeper"
    leftover = Journal.start(journal_path(directory, KEY), {"started_at": "2026-11-21T00:00:00Z"})
    orphan = await asyncio.create_subprocess_exec("sleep", "60", start_new_session=True)
    leftover.group(orphan.pid)
    leftover.close()
    with journal_path(directory, KEY).open("ab") as cut:
        cut.write(b'{"ended": {"cut sh')  # a keeper killed half way through a line
    client = KeeperClient(directory, lease_seconds=30)
    try:
        inventory = await client.open()
    finally:
        await client.close()
    [ended] = inventory.ended
    assert ended.key == KEY
    assert ended.outcome.lost
    assert await asyncio.wait_for(orphan.wait(), 5) == -signal.SIGKILL


async def test_one_live_service_owns_a_directory(tmp_path: Path) -> None:
    first = KeeperClient(tmp_path / "keeper", lease_seconds=30)
    first.own()
    try:
        with pytest.raises(ConfigError, match="in use by another live service"):
            KeeperClient(tmp_path / "keeper", lease_seconds=30).own()
    finally:
        await first.close()


async def _alive(pid: int) -> bool:
    return alive(pid)


async def _lines(path: Path) -> list[str]:
    return _lines_now(path)


def _lines_now(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
