"""What every command shares: the errors it reports, its settings, a short-lived store."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from service import devenv
from service.config import Settings, load_settings
from service.errors import ConfigError, Problem, SpecError, TributaryError
from service.store import Store, connect

EXIT_USAGE = 2
T = TypeVar("T")


def run_command(handler: Any, args: argparse.Namespace) -> int:
    """Run a command; say what went wrong in one line per problem, with its exit code."""
    try:
        code: int | None = handler(args)
    except ConfigError as exc:
        print(f"tributary: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SpecError as exc:
        for problem in exc.problems:
            print(f"tributary: {problem}", file=sys.stderr)
        return 1
    except TributaryError as exc:
        print(f"tributary: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code or 0


def settings_for(args: argparse.Namespace) -> Settings:
    """Settings as configured; in the dev environment, what a live ``tributary dev`` chose."""
    overrides: dict[str, Any] = {}
    if os.environ.get("TRIBUTARY_ENV", "dev") == "dev" and args.config is None:
        overrides = devenv.read_endpoints()
    return load_settings(args.config, overrides=overrides)


def with_store(settings: Settings, query: Callable[[Store], Awaitable[T]]) -> T:
    async def go() -> T:
        store = await connect(settings.database_url, 2)
        try:
            return await query(store)
        finally:
            await store.close()

    return asyncio.run(go())


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """``NAME=VALUE`` options as a mapping."""
    given = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise SpecError([Problem(f"expected NAME=VALUE, got {item!r}", "--param")])
        given[name] = value
    return given


def print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
