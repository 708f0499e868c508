"""The command line explains itself: every command, argument and option has help text,
``--help`` starts fast (the parser imports none of the service), and an announcement that
starts nothing says so."""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.cli import build_parser
from service.cli.completion import bash_script
from service.cli.events import announcement_warnings
from service.cli.runs import print_run


def every_parser(
    parser: argparse.ArgumentParser, name: str = "tributary"
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found += every_parser(sub, f"{name} {sub_name}")
    return found


def test_every_argument_and_option_has_help_text() -> None:
    missing = [
        f"{name}: {'/'.join(action.option_strings) or action.dest}"
        for name, parser in every_parser(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
        and not action.help
    ]
    assert missing == []


def test_help_imports_none_of_the_service() -> None:
    code = (
        "import sys; from service.cli import build_parser; build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith('service.') and m != 'service.cli'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_announcing_what_nothing_listens_for_is_warned_about() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "pipelines"
    [typo] = announcement_warnings(examples, "orders_rw", "2026-11-21")
    assert "triggers on or waits for 'orders_rw' (did you mean 'orders_raw'?)" in typo
    [unreadable] = announcement_warnings(examples, "orders_raw", "yesterday")
    assert unreadable.startswith("orders_daily will not start: partition 'yesterday'")
    assert announcement_warnings(examples, "orders_raw", "2026-11-21") == []
    assert announcement_warnings(examples, "dim_customer", "2026-11-20") == []  # waited for


def test_runs_show_prints_the_tasks_in_the_pipelines_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    at = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)

    def task(task_id: str, state: str, attempt: int, **more: Any) -> dict[str, Any]:
        return {
            "task_id": task_id,
            "state": state,
            "attempt": attempt,
            "exit_code": more.get("exit_code"),
            "started_at": at if attempt else None,
            "ended_at": at + timedelta(seconds=1.5) if attempt else None,
            "error_snippet": more.get("error"),
            **({"waiting_for": more["waits"]} if "waits" in more else {}),
        }

    view = {
        "run": {
            "run_id": "r1",
            "pipeline_id": "p",
            "batch_date": date(2026, 11, 21),
            "state": "running",
            "created_at": at,
        },
        "tasks": [
            task("load", "queued", 0, waits=[{"waits_for": "dim 2026-11-20"}]),
            task("extract", "failed", 2, exit_code=3, error="boom\nno such table"),
        ],
        "commands": [
            {"at": at, "actor": "alice", "command": "retry", "outcome": "applied", "detail": ""}
        ],
        "attempts": {"extract": [{"attempt": 1, "state": "failed", "exit_code": 3}]},
    }
    print_run(view, ["extract", "load"], Path("/logs"))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("run r1  p  batch date 2026-11-21  running")
    assert out[2].split() == ["extract", "failed", "2", "3", "1.50", "no", "such", "table"]
    assert out[3].split() == ["load", "queued", "0", "-", "-", "dim", "2026-11-20"]
    assert "  extract attempt 1: failed (exit 3)" in out
    assert out[-1] == "  2026-11-21 03:00:00 alice: retry"


def test_the_bash_completion_offers_commands_actions_and_options() -> None:
    script = bash_script(build_parser())

    def complete(*words: str) -> list[str]:
        probe = (
            f"{script}\nCOMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; "
            '_tributary; echo "${COMPREPLY[@]}"'
        )
        done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
        return done.stdout.split()

    assert complete("tributary", "ba") == ["backfill"]
    assert complete("tributary", "runs", "re") == ["resume", "retry"]
    assert complete("tributary", "runs", "cancel", "--re") == ["--reason"]
