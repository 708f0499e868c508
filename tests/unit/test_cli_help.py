"""The command line explains itself: every command, argument and option has help text,
``--help`` starts fast (the parser imports none of the service), and an announcement that
starts nothing says so."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from service.cli import build_parser
from service.cli.events import announcement_warnings


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
