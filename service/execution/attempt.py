"""One attempt of a task, run the same everywhere: cleanup, the command, rollback if it failed.

The local executor and remote workers both run a :class:`Launch` with :func:`run_attempt`:
cleanup first (a failing cleanup fails the attempt, the command does not run), then the command
under its time limit, then rollback if it went wrong; the exit code is classified by the task's
skip and fatal codes. :func:`completion` is the ``task.completed`` that reports the outcome.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from service.clock import utc_now
from service.engine.retry import classify_exit
from service.engine.states import TaskState
from service.events import TaskCompleted
from service.execution.launch import Launch
from service.execution.metadata import describe_outputs
from service.execution.process import (
    ERROR_SNIPPET_CHARS,
    Interruption,
    ProcessExit,
    run_process,
    task_environment,
)
from service.execution.results import RESULT_FILE_VARIABLE, ResultError, read_result, result_path
from service.observability import get_logger
from service.spec.tasks import RUNNER_PYTHON

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """How an attempt ended, as the engine will be told."""

    result: ProcessExit
    outcome: TaskState
    retryable: bool
    reason: str
    cache_key: str | None = None  # recorded with a success of a cached task
    lost: bool = False  # stopped through no fault of the task (the service stopped, …)
    task_result: Mapping[str, Any] | None = None  # what the task reported (results.py)


async def run_attempt(
    launch: Launch,
    log_path: Path,
    interrupt: Interruption | None = None,
    on_start: Callable[[int], None] | None = None,
) -> AttemptOutcome:
    """cleanup, then the command under its time limit, then rollback if it went wrong.

    ``on_start`` is told each process group started (cleanup, command, rollback) as it starts.
    """
    reported = _prepare(launch, log_path)
    env = task_environment(
        os.environ, {}, {**launch.env, RESULT_FILE_VARIABLE: str(reported)}, launch.inherit_env
    )

    async def run(argv: list[str], limit: float | None, stoppable: bool) -> ProcessExit:
        stop = interrupt if stoppable else None
        return await run_process(
            argv, env, launch.cwd, log_path, limit, launch.grace, stop, on_start
        )

    if launch.cleanup:
        log.info("attempt.cleanup", argv=launch.cleanup)
        cleaned = await run(launch.cleanup, launch.cleanup_timeout, True)
        if interrupt is not None and cleaned.interrupted:
            return AttemptOutcome(cleaned, TaskState.FAILED, True, interrupt.reason, lost=True)
        if cleaned.exit_code != 0 or cleaned.timed_out:
            why = f"cleanup failed ({ending(cleaned)}): the command did not run"
            return AttemptOutcome(cleaned, TaskState.FAILED, True, why)

    argv = _interpreted(launch.argv)
    log.info("attempt.started", argv=argv, log_path=str(log_path))
    began = time.monotonic()
    result = await run(argv, launch.time_limit, True)
    if interrupt is not None and result.interrupted and interrupt.rollback:
        reason = interrupt.reason  # cancelled: stopped for good, and rolled back
        if launch.rollback:
            log.info("attempt.rollback", argv=launch.rollback)
            rolled = await run(launch.rollback, launch.rollback_timeout, False)
            reason += f"; rollback {'done' if rolled.exit_code == 0 else ending(rolled)}"
        return AttemptOutcome(result, TaskState.FAILED, False, reason)
    if interrupt is not None and result.interrupted:
        return AttemptOutcome(result, TaskState.FAILED, True, interrupt.reason, lost=True)
    if result.timed_out:
        outcome, retryable = TaskState.TIMED_OUT, True
        reason = f"timed out after {launch.time_limit:g}s"
    else:
        outcome, retryable = classify_exit(result.exit_code, launch.skip_codes, launch.fatal_codes)
        reason = "" if outcome is not TaskState.FAILED else ending(result)
    task_result, refused = _reported(reported) if outcome is TaskState.SUCCESS else (None, "")
    if refused:  # the task's bug: a clear failure, not retried
        outcome, retryable, reason = TaskState.FAILED, False, refused
    if outcome is TaskState.SUCCESS and launch.output_uris:
        describe_outputs(launch, result.exit_code, time.monotonic() - began, task_result)
    if outcome in (TaskState.FAILED, TaskState.TIMED_OUT) and launch.rollback:
        log.info("attempt.rollback", argv=launch.rollback)
        rolled = await run(launch.rollback, launch.rollback_timeout, False)
        reason += f"; rollback {'done' if rolled.exit_code == 0 else ending(rolled)}"
    return AttemptOutcome(result, outcome, retryable, reason, task_result=task_result)


def _interpreted(argv: list[str]) -> list[str]:
    """A Python task runs under this process's interpreter, which has the task runner."""
    return [sys.executable if arg == RUNNER_PYTHON else arg for arg in argv]


def _prepare(launch: Launch, log_path: Path) -> Path:
    """Where the attempt's result goes (an earlier run's there is not this one's); its run's
    directory ({run_dir}), made where the attempt runs."""
    reported = result_path(log_path)
    reported.unlink(missing_ok=True)
    if "TRIBUTARY_RUN_DIR" in launch.env:
        Path(launch.env["TRIBUTARY_RUN_DIR"]).mkdir(parents=True, exist_ok=True)
    return reported


def _reported(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The result a successful command wrote, or why it cannot be taken."""
    try:
        return read_result(path), ""
    except ResultError as exc:
        log.error("attempt.result_refused", reason=str(exc))
        return None, str(exc)


def unrunnable(error: BaseException, retryable: bool = True) -> AttemptOutcome:
    """An attempt that could not even be prepared: failed (retried only if ``retryable``),
    never left running."""
    message = f"cannot run the attempt: {error!r}"
    log.error("attempt.unrunnable", error=message)
    return AttemptOutcome(
        ProcessExit(None, None, message[-ERROR_SNIPPET_CHARS:], message),
        TaskState.FAILED,
        retryable,
        message,
    )


def completion(
    run_id: str,
    task_id: str,
    attempt: int,
    done: AttemptOutcome,
    worker_id: str,
    started: datetime,
    ended: datetime | None = None,
) -> TaskCompleted:
    """The ``task.completed`` that reports ``done``."""
    result = done.result
    return TaskCompleted(
        run_id=run_id,
        task_id=task_id,
        attempt=attempt,
        outcome=done.outcome,
        retryable=done.retryable,
        reason=done.reason or None,
        cache_key=done.cache_key,
        lost=done.lost,
        exit_code=result.exit_code,
        signal=result.signal,
        error_snippet=result.error_snippet,
        stderr_tail=result.stderr_tail,
        started_at=started,
        ended_at=ended or utc_now(),
        worker_id=worker_id,
        result=done.task_result,
    )


def ending(result: ProcessExit) -> str:
    if result.exit_code is None:
        return "it could not start"
    if result.timed_out:
        return "timed out"
    return f"killed by {result.signal}" if result.signal else f"exit code {result.exit_code}"
