"""One attempt of a task: planned once (rendered from the spec), run the same everywhere.

The local executor and remote workers both run an :class:`AttemptPlan` with
:func:`run_attempt`: cleanup, then the command under its time limit, then rollback if it
went wrong; the exit code classified by the task's skip and fatal codes. A plan is plain
data, so it travels to a remote worker inside a ``task.requested`` event.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from service.bus.envelope import utc_timestamp
from service.engine.retry import classify_exit
from service.engine.states import TaskState
from service.executor.process import (
    ERROR_SNIPPET_CHARS,
    ProcessExit,
    run_process,
    task_environment,
)
from service.observability import get_logger
from service.spec.loader import Pipeline
from service.spec.params import ParamValue, resolve_params
from service.spec.render import render_task, template_values
from service.store.records import ClaimedAttempt

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AttemptPlan:
    """Everything one attempt needs, rendered; the environment is what the task declares
    plus the run's context (the runner adds the few inherited basics)."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    time_limit: float | None
    grace: float
    cleanup: list[str] | None = None
    cleanup_timeout: float = 600.0
    rollback: list[str] | None = None
    rollback_timeout: float = 600.0
    skip_codes: tuple[int, ...] = ()
    fatal_codes: tuple[int, ...] = ()
    inherit_env: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttemptPlan:
        return cls(
            **{
                **data,
                "skip_codes": tuple(data.get("skip_codes", ())),
                "fatal_codes": tuple(data.get("fatal_codes", ())),
                "inherit_env": tuple(data.get("inherit_env", ())),
            }
        )


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """How an attempt ended, as the engine will be told."""

    result: ProcessExit
    outcome: TaskState
    retryable: bool
    reason: str
    cache_key: str | None = None  # recorded with a success of a cached task


def plan_attempt(
    pipeline: Pipeline,
    task_id: str,
    *,
    run_id: str,
    attempt: int,
    batch_date: date,
    trace_id: str,
    params: dict[str, ParamValue],
) -> AttemptPlan:
    spec = pipeline.tasks[task_id]
    values = template_values(
        batch_date=batch_date,
        run_id=run_id,
        attempt=attempt,
        task_id=task_id,
        pipeline_id=pipeline.id,
        params=params,
    )
    task = render_task(pipeline, task_id, values)
    context = {
        "TRIBUTARY_RUN_ID": run_id,
        "TRIBUTARY_TASK_ID": task_id,
        "TRIBUTARY_ATTEMPT": str(attempt),
        "TRIBUTARY_BATCH_DATE": batch_date.isoformat(),
        "TRIBUTARY_TRACE_ID": trace_id,
        "TRIBUTARY_PIPELINE_ID": pipeline.id,
        **{f"TRIBUTARY_PARAM_{name.upper()}": str(values[f"params.{name}"]) for name in params},
    }
    return AttemptPlan(
        argv=task.argv,
        env={**task.env, **context},
        cwd=task.cwd,
        time_limit=spec.timeout.total_seconds() if spec.timeout else None,
        grace=spec.grace_period.total_seconds(),
        cleanup=task.cleanup,
        cleanup_timeout=spec.cleanup.timeout.total_seconds() if spec.cleanup else 600.0,
        rollback=task.rollback,
        rollback_timeout=spec.rollback.timeout.total_seconds() if spec.rollback else 600.0,
        skip_codes=spec.exit_codes.skip,
        fatal_codes=spec.exit_codes.fatal,
        inherit_env=tuple(spec.inherit_env),
    )


def plan_claim(pipeline: Pipeline, claim: ClaimedAttempt) -> AttemptPlan:
    """The plan of a claimed attempt, with the run's parameters resolved."""
    return plan_attempt(
        pipeline,
        claim.task_id,
        run_id=claim.run_id,
        attempt=claim.attempt,
        batch_date=claim.batch_date,
        trace_id=claim.trace_id,
        params=resolve_params(pipeline.spec.params, claim.params),
    )


async def run_attempt(
    plan: AttemptPlan, log_path: Path, interrupt: asyncio.Event | None = None
) -> AttemptOutcome:
    """cleanup, then the command under its time limit, then rollback if it went wrong."""
    env = task_environment(os.environ, {}, plan.env, plan.inherit_env)
    if plan.cleanup:
        log.info("attempt.cleanup", argv=plan.cleanup)
        cleaned = await run_process(
            plan.cleanup, env, plan.cwd, log_path, plan.cleanup_timeout, plan.grace, interrupt
        )
        if cleaned.exit_code != 0 or cleaned.timed_out or cleaned.interrupted:
            why = f"cleanup failed ({ending(cleaned)}): the command did not run"
            return AttemptOutcome(cleaned, TaskState.FAILED, True, why)

    log.info("attempt.started", argv=plan.argv, log_path=str(log_path))
    result = await run_process(
        plan.argv, env, plan.cwd, log_path, plan.time_limit, plan.grace, interrupt
    )
    if result.interrupted:
        return AttemptOutcome(result, TaskState.FAILED, True, "interrupted: the service stopped")
    if result.timed_out:
        outcome, retryable = TaskState.TIMED_OUT, True
        reason = f"timed out after {plan.time_limit:g}s"
    else:
        outcome, retryable = classify_exit(result.exit_code, plan.skip_codes, plan.fatal_codes)
        reason = "" if outcome is not TaskState.FAILED else ending(result)
    if outcome in (TaskState.FAILED, TaskState.TIMED_OUT) and plan.rollback:
        log.info("attempt.rollback", argv=plan.rollback)
        rolled = await run_process(
            plan.rollback, env, plan.cwd, log_path, plan.rollback_timeout, plan.grace
        )
        reason += f"; rollback {'done' if rolled.exit_code == 0 else ending(rolled)}"
    return AttemptOutcome(result, outcome, retryable, reason)


def unrunnable(error: BaseException) -> AttemptOutcome:
    """An attempt that could not even be prepared: failed, retryable, never left running."""
    message = f"cannot run the attempt: {error!r}"
    log.error("attempt.unrunnable", error=message)
    return AttemptOutcome(
        ProcessExit(None, None, message[-ERROR_SNIPPET_CHARS:], message),
        TaskState.FAILED,
        True,
        message,
    )


def completion_data(
    run_id: str,
    task_id: str,
    attempt: int,
    done: AttemptOutcome,
    worker_id: str,
    started: datetime,
) -> dict[str, Any]:
    """The ``data`` of the ``task.completed`` event that reports ``done``."""
    result = done.result
    return {
        "run_id": run_id,
        "task_id": task_id,
        "attempt": attempt,
        "outcome": str(done.outcome),
        "retryable": done.retryable,
        "reason": done.reason or None,
        "cache_key": done.cache_key,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "error_snippet": result.error_snippet,
        "stderr_tail": result.stderr_tail,
        "started_at": utc_timestamp(started),
        "ended_at": utc_timestamp(),
        "worker_id": worker_id,
    }


def ending(result: ProcessExit) -> str:
    if result.exit_code is None:
        return "it could not start"
    if result.timed_out:
        return "timed out"
    return f"killed by {result.signal}" if result.signal else f"exit code {result.exit_code}"
