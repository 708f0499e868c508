"""One attempt as a real subprocess: exit codes, signals, output capture, environment."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from service.execution.process import (
    Interruption,
    ProcessExit,
    leader_exit,
    run_process,
    task_environment,
)

PY = sys.executable


async def run(code: str, tmp_path: Path, env: dict[str, str] | None = None) -> ProcessExit:
    return await run_process([PY, "-c", code], env or {}, None, tmp_path / "a" / "1.log")


async def test_success_writes_both_streams_to_the_log(tmp_path: Path) -> None:
    result = await run("import sys; print('out'); print('err', file=sys.stderr)", tmp_path)
    assert result.exit_code == 0
    assert result.signal is None
    log = (tmp_path / "a" / "1.log").read_text()
    assert "out" in log
    assert "err" in log


async def test_failure_keeps_the_end_of_stderr(tmp_path: Path) -> None:
    code = "import sys\nfor i in range(100): print(f'line {i}', file=sys.stderr)\nsys.exit(3)"
    result = await run(code, tmp_path)
    assert result.exit_code == 3
    assert result.stderr_tail is not None
    lines = result.stderr_tail.splitlines()
    assert lines == [f"line {i}" for i in range(80, 100)]
    assert result.error_snippet is not None
    assert len(result.error_snippet) == 200
    assert result.error_snippet.endswith("line 99")


async def test_a_signal_is_reported_by_name(tmp_path: Path) -> None:
    result = await run("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", tmp_path)
    assert result.signal == "SIGKILL"
    assert result.exit_code == 137


async def test_a_missing_program_fails_with_a_reason(tmp_path: Path) -> None:
    result = await run_process(["/no/such/program"], {}, None, tmp_path / "x.log")
    assert result.exit_code is None
    assert result.error_snippet is not None
    assert "cannot start '/no/such/program'" in result.error_snippet


async def test_the_task_sees_only_its_environment(tmp_path: Path) -> None:
    env = task_environment(
        {"PATH": "/usr/bin:/bin", "TRIBUTARY_DATABASE_URL": "secret", "AWS_SECRET": "s"},
        {"MODE": "full"},
        {"TRIBUTARY_RUN_ID": "r1"},
    )
    assert env == {"PATH": "/usr/bin:/bin", "MODE": "full", "TRIBUTARY_RUN_ID": "r1"}
    asked = task_environment({"AWS_PROFILE": "etl", "AWS_SECRET": "s"}, {}, {}, ["AWS_PROFILE"])
    assert asked == {"AWS_PROFILE": "etl"}
    code = "import os; print(sorted(os.environ))"
    result = await run(code, tmp_path, env)
    assert result.exit_code == 0
    assert "TRIBUTARY_DATABASE_URL" not in (tmp_path / "a" / "1.log").read_text()


def gone(pid: int) -> bool:
    """Not running: no such process, or a zombie waiting for a reaper."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


STUBBORN = """
trap '' TERM
sh -c 'trap "" TERM; echo $$ > {pids}/grandchild; while true; do sleep 0.05; done' &
echo $$ > {pids}/child
while true; do sleep 0.05; done
"""


async def test_a_timeout_kills_the_whole_group_even_when_it_traps_sigterm(tmp_path: Path) -> None:
    script = STUBBORN.format(pids=tmp_path)
    started = time.monotonic()
    result = await run_process(
        ["sh", "-c", script],
        {"PATH": "/usr/bin:/bin"},
        None,
        tmp_path / "t.log",
        time_limit=0.5,
        grace=0.5,
    )
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert result.signal == "SIGKILL"  # SIGTERM was ignored: the grace ran out
    assert 1.0 <= elapsed < 5
    for name in ("child", "grandchild"):
        assert gone(int((tmp_path / name).read_text())), f"the {name} survived"
    assert "timed out after 0.5s" in (tmp_path / "t.log").read_text()
    assert result.error_snippet is not None
    assert result.error_snippet.endswith("timed out")


async def test_a_polite_task_ends_on_sigterm_within_the_grace(tmp_path: Path) -> None:
    result = await run_process(
        ["sleep", "30"],
        {"PATH": "/usr/bin:/bin"},
        None,
        tmp_path / "t.log",
        time_limit=0.2,
        grace=5,
    )
    assert (result.timed_out, result.signal) == (True, "SIGTERM")


async def test_an_interrupt_stops_the_attempt_and_says_why(tmp_path: Path) -> None:
    interruption = Interruption()
    started = asyncio.Event()
    running = asyncio.create_task(
        run_process(
            ["sleep", "30"],
            {"PATH": "/usr/bin:/bin"},
            None,
            tmp_path / "t.log",
            interrupt=interruption,
            on_start=lambda pid: started.set(),
        )
    )
    await asyncio.wait_for(started.wait(), 10)
    interruption.stop("stopped: a test wanted it")
    result = await asyncio.wait_for(running, 10)
    assert (result.interrupted, result.timed_out, result.signal) == (True, False, "SIGTERM")
    assert "[tributary] stopped: a test wanted it" in (tmp_path / "t.log").read_text()


async def test_background_leftovers_end_with_their_task(tmp_path: Path) -> None:
    script = f"sh -c 'echo $$ > {tmp_path}/bg; sleep 30' & sleep 0.2; echo done"
    started = time.monotonic()
    result = await run_process(
        ["sh", "-c", script], {"PATH": "/usr/bin:/bin"}, None, tmp_path / "t.log"
    )
    assert result.exit_code == 0
    assert time.monotonic() - started < 5  # not held up by the background child's pipes
    assert gone(int((tmp_path / "bg").read_text()))


async def test_a_sigkill_without_timeout_hints_at_memory(tmp_path: Path) -> None:
    result = await run("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", tmp_path)
    assert result.error_snippet is not None
    assert "possible out-of-memory" in result.error_snippet


# In a fresh interpreter: its peak memory (ru_maxrss, a high-water mark) is the
# interpreter's own when the attempt starts, so any growth while 50 MB pass through shows.
MEASURE = """
import asyncio, resource, sys
from pathlib import Path
from service.execution.process import run_process
async def main():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = await run_process([sys.executable, "-c", sys.argv[1]], {}, None, Path(sys.argv[2]))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(result.exit_code, after - before)
asyncio.run(main())
"""
FIFTY_MB = (
    "import sys\nline = b'x' * 1023 + b'\\n'\nfor _ in range(51200): sys.stdout.buffer.write(line)"
)


async def test_fifty_megabytes_of_output_keep_memory_flat(tmp_path: Path) -> None:
    measured = await asyncio.create_subprocess_exec(
        PY, "-c", MEASURE, FIFTY_MB, str(tmp_path / "a.log"), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await measured.communicate()
    exit_code, grown_kib = (int(word) for word in out.split())
    assert exit_code == 0
    assert (tmp_path / "a.log").stat().st_size == 50 * 1024 * 1024
    assert grown_kib / 1024 < 10, f"peak memory grew by {grown_kib / 1024:.1f} MiB"


async def test_a_leader_reaped_before_its_pidfd_is_opened_counts_as_exited() -> None:
    # What a child watcher thread does to a quick task: it reaps it before the runner looks.
    process = await asyncio.create_subprocess_exec("true")
    await process.wait()
    exited = leader_exit(process)
    assert exited.done()  # at once, not after a poll for the returncode


async def test_a_leader_exit_is_seen_through_its_pidfd_while_it_holds_nothing() -> None:
    process = await asyncio.create_subprocess_exec(PY, "-c", "import time; time.sleep(0.2)")
    exited = leader_exit(process)
    assert not exited.done()
    await exited
    assert await process.wait() == 0
