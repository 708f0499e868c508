"""What operators ask of a run: cancel it, retry it, retry or mark one task, resume it from a
task. Pure, like ``decide``: each command is decided against the run as it is, and either
changes it (transitions, and attempts to stop) or is refused with a reason a person can act on.

Rerunning a task moves it back to ``pending`` with a fresh budget (its retries and lost
attempts count from now; attempt numbers go on). Tasks that never ran but were decided by what
is rerun (``upstream_failed``, or ``skipped`` by a trigger rule) are decided again. A run that
had ended is active again under the same id and spec version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from service.engine.decide import Draft, finish_run_if_done, readiness
from service.engine.model import Decision, RunSnapshot, StopAttempt
from service.engine.states import (
    RUN_ACTIVE,
    RUN_TERMINAL,
    TASK_TERMINAL,
    RunState,
    TaskState,
)
from service.spec.graph import TaskGraph

# Task ends that a retry runs again.
RETRYABLE_ENDS = frozenset(
    {TaskState.FAILED, TaskState.TIMED_OUT, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED}
)
MARKABLE = frozenset({TaskState.SUCCESS, TaskState.SKIPPED})


@dataclass(frozen=True, slots=True)
class CancelRun:
    reason: str


@dataclass(frozen=True, slots=True)
class RetryRun:
    reason: str


@dataclass(frozen=True, slots=True)
class RetryTask:
    task_id: str
    downstream: bool
    reason: str


@dataclass(frozen=True, slots=True)
class MarkTask:
    task_id: str
    state: TaskState  # success or skipped
    reason: str


@dataclass(frozen=True, slots=True)
class ResumeFrom:
    task_id: str
    reason: str


Command = CancelRun | RetryRun | RetryTask | MarkTask | ResumeFrom

# Commands that may make an ended run active again.
REOPENING = (RetryRun, RetryTask, MarkTask, ResumeFrom)


def decide_command(graph: TaskGraph, run: RunSnapshot, command: Command) -> Decision:
    """The command's transitions and effects, or ``ignored`` set to why it is refused."""
    if run.state is RunState.QUEUED and not isinstance(command, CancelRun):
        return _refused(
            f"run {run.run_id} is queued, waiting for room to start: cancel it, or act on it "
            "once it runs"
        )
    match command:
        case CancelRun():
            return _cancel(run, command)
        case RetryRun():
            return _retry_run(graph, run, command)
        case RetryTask():
            return _retry_task(graph, run, command)
        case MarkTask():
            return _mark(graph, run, command)
        case ResumeFrom():
            return _resume(graph, run, command)


def _refused(why: str) -> Decision:
    return Decision(ignored=why)


def _cancel(run: RunSnapshot, command: CancelRun) -> Decision:
    if run.state not in RUN_ACTIVE:
        return _refused(
            f"run {run.run_id} is {run.state}: only a queued or running run can be cancelled"
        )
    draft = Draft(run)
    for task_id, task in run.tasks.items():
        if task.state in TASK_TERMINAL:
            continue
        if task.state is TaskState.RUNNING:
            draft.effect(StopAttempt(task_id, task.attempt))
        draft.move_task(task_id, TaskState.CANCELLED, command.reason)
    draft.move_run(RunState.CANCELLED, command.reason)
    return draft.decision()


def _retry_run(graph: TaskGraph, run: RunSnapshot, command: RetryRun) -> Decision:
    if run.state not in (RunState.FAILED, RunState.CANCELLED):
        return _refused(
            f"run {run.run_id} is {run.state}: only failed or cancelled runs can be retried"
        )
    again = [t for t, task in run.tasks.items() if task.state in RETRYABLE_ENDS]
    return _rerun(graph, run, again, command.reason)


def _retry_task(graph: TaskGraph, run: RunSnapshot, command: RetryTask) -> Decision:
    task = run.tasks.get(command.task_id)
    if task is None:
        return _refused(f"run {run.run_id} has no task {command.task_id!r}")
    if task.state not in RETRYABLE_ENDS:
        return _refused(
            f"task {command.task_id!r} is {task.state}: only a failed, timed out, "
            "upstream_failed or cancelled task can be retried"
        )
    again = {command.task_id}
    if command.downstream:
        downstream = graph_downstream(graph, command.task_id)
        running = [t for t in downstream if run.tasks[t].state is TaskState.RUNNING]
        if running:
            return _refused(f"downstream task(s) {', '.join(sorted(running))} are running")
        again |= {t for t in downstream if run.tasks[t].state in TASK_TERMINAL}
    return _rerun(graph, run, again, command.reason)


def _resume(graph: TaskGraph, run: RunSnapshot, command: ResumeFrom) -> Decision:
    if command.task_id not in run.tasks:
        return _refused(f"run {run.run_id} has no task {command.task_id!r}")
    if run.state not in RUN_TERMINAL:
        return _refused(
            f"run {run.run_id} is {run.state}: only a finished run can be resumed "
            "(retry a task of a running one)"
        )
    return _rerun(graph, run, graph_downstream(graph, command.task_id), command.reason)


def _mark(graph: TaskGraph, run: RunSnapshot, command: MarkTask) -> Decision:
    task = run.tasks.get(command.task_id)
    if task is None:
        return _refused(f"run {run.run_id} has no task {command.task_id!r}")
    if command.state not in MARKABLE:
        return _refused(f"a task can be marked success or skipped, not {command.state}")
    if task.state is TaskState.RUNNING:
        return _refused(
            f"task {command.task_id!r} is running: cancel the run or wait for the attempt to end"
        )
    if task.state is command.state:
        return _refused(f"task {command.task_id!r} is {task.state} already")
    draft = Draft(run)
    _reopen(draft, run)
    draft.move_task(command.task_id, command.state, command.reason)
    _redecide(graph, draft, run, set(), command.task_id)
    return draft.decision()


def _rerun(graph: TaskGraph, run: RunSnapshot, tasks: Iterable[str], reason: str) -> Decision:
    again = set(tasks)
    running = [t for t in again if run.tasks[t].state is TaskState.RUNNING]
    if running:
        return _refused(f"task(s) {', '.join(sorted(running))} are running")
    draft = Draft(run)
    _reopen(draft, run)
    for task_id in graph.order:
        if task_id in again and run.tasks[task_id].state is not TaskState.PENDING:
            draft.move_task(task_id, TaskState.PENDING, reason, reset=True)
    _redecide(graph, draft, run, again, None)
    return draft.decision()


def _reopen(draft: Draft, run: RunSnapshot) -> None:
    if run.state in RUN_TERMINAL:
        draft.move_run(RunState.RUNNING, f"active again (was {run.state})")


def _redecide(
    graph: TaskGraph, draft: Draft, run: RunSnapshot, rerun: set[str], changed: str | None
) -> None:
    """Decide again, in topological order, every pending task and every task that never ran
    but was decided by an upstream end that has changed; then end the run if all ended."""
    moved = set(rerun) | ({changed} if changed else set())
    for task_id in graph.order:
        preds = graph.predecessors[task_id]
        state = draft.task_state(task_id)
        never_ran = run.tasks[task_id].attempt == 0 and state in (
            TaskState.UPSTREAM_FAILED,
            TaskState.SKIPPED,
        )
        if never_ran and task_id not in moved and any(p in moved for p in preds):
            draft.move_task(task_id, TaskState.PENDING, "decided again: an upstream task changed")
            moved.add(task_id)
            state = TaskState.PENDING
        if state is not TaskState.PENDING:
            continue
        verdict = readiness(graph.trigger_rules[task_id], [draft.task_state(p) for p in preds])
        if verdict is not None:
            draft.move_task(task_id, verdict[0], verdict[1])
            moved.add(task_id)
    finish_run_if_done(draft)


def graph_downstream(graph: TaskGraph, task_id: str) -> set[str]:
    return graph.downstream_of(task_id)
