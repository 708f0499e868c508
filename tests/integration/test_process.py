"""One attempt as a real subprocess: exit codes, signals, output capture, environment."""

from __future__ import annotations

import sys
from pathlib import Path

from service.executor.process import run_process, task_environment

PY = sys.executable


async def run(code: str, tmp_path: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
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
    code = "import os; print(sorted(os.environ))"
    result = await run(code, tmp_path, env)
    assert result.exit_code == 0
    assert "TRIBUTARY_DATABASE_URL" not in (tmp_path / "a" / "1.log").read_text()
