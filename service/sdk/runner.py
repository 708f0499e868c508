"""The task runner: ``python -m service.sdk.runner package.module:function``.

Runs one Python task inside its attempt's subprocess (so the executor's process group,
timeout, cleanup and rollback rules hold as for any command): imports the function, builds
its :class:`~service.sdk.Context`, calls it (a coroutine function is awaited), and writes what
it returns to ``TRIBUTARY_RESULT_FILE``. Exit codes: 0 done; 1 the task raised (traceback on
stderr, the attempt's log); 2 the function cannot be found or returned something that is not
a result (a mapping of JSON values) — both said in one line.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from service.execution.results import (
    MAX_RESULT_BYTES,
    RESULT_FILE_VARIABLE,
    ResultError,
    checked_result,
)
from service.sdk.context import Context, context
from service.sdk.tasks import TaskFunction

NOT_RUNNABLE = 2


def find(target: str) -> Callable[..., Any]:
    module_name, _, name = target.partition(":")
    if not module_name or not name:
        raise LookupError(f"{target!r} is not package.module:function")
    sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    found = getattr(module, name, None)
    if found is None:
        raise LookupError(f"module {module_name!r} has no {name!r}")
    function = found.function if isinstance(found, TaskFunction) else found
    if not callable(function):
        raise LookupError(f"{target} is not a function")
    return function


def call(function: Callable[..., Any], ctx: Context) -> Any:
    """With the context when the function takes an argument."""
    takes = len(inspect.signature(function).parameters) > 0
    outcome = function(ctx) if takes else function()
    if not inspect.iscoroutine(outcome):
        return outcome
    import asyncio  # here: most tasks are plain functions, and asyncio costs ~60 ms to load

    return asyncio.run(outcome)


def write_result(result: Any) -> None:
    if result is None:
        return
    data = orjson.dumps(checked_result(result))
    if len(data) > MAX_RESULT_BYTES:
        raise ResultError(
            f"result_too_large: the task returned {len(data):,} bytes of result, at most "
            f"{MAX_RESULT_BYTES:,} are kept (report counts and checksums, not data)"
        )
    path = os.environ.get(RESULT_FILE_VARIABLE)
    if path:
        Path(path).write_bytes(data)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m service.sdk.runner package.module:function", file=sys.stderr)
        return NOT_RUNNABLE
    try:
        function = find(argv[0])
        ctx = context()
    except (ImportError, LookupError, KeyError, ValueError) as exc:
        print(f"tributary task runner: cannot run {argv[0]}: {exc}", file=sys.stderr)
        return NOT_RUNNABLE
    started = time.monotonic()
    say(ctx, "task.started", function=argv[0])
    try:
        result = call(function, ctx)
    except Exception:
        say(ctx, "task.failed", level="error", seconds=round(time.monotonic() - started, 3))
        traceback.print_exc()
        return 1
    try:
        write_result(result)
    except (ResultError, TypeError) as exc:
        print(f"tributary task runner: {argv[0]} returned no result: {exc}", file=sys.stderr)
        return NOT_RUNNABLE
    say(ctx, "task.done", seconds=round(time.monotonic() - started, 3), result=result)
    return 0


def say(ctx: Context, event: str, level: str = "info", **fields: Any) -> None:
    """One JSON line on stderr, as the task's own logger writes them (without loading it)."""
    line = {
        "event": event,
        "level": level,
        "timestamp": datetime.now(UTC).isoformat(),
        "run_id": ctx.run_id,
        "task_id": ctx.task_id,
        "attempt": ctx.attempt,
        "trace_id": ctx.trace_id,
        **fields,
    }
    sys.stderr.write(orjson.dumps(line, default=str).decode() + "\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
