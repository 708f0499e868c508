"""Run and task-instance states, the named sets over them, and the one table of allowed moves.

The database enforces the same names with CHECK constraints (migrations/0001_initial.sql);
``tests/integration/test_schema.py`` keeps the two in step.
"""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    QUEUED = "queued"  # created, no task started yet
    RUNNING = "running"  # at least one task queued or further
    SUCCESS = "success"  # every task ended well (success or skipped)
    FAILED = "failed"  # every task ended, at least one badly
    CANCELLED = "cancelled"  # stopped by an operator


class TaskState(StrEnum):
    PENDING = "pending"  # waiting for its dependencies
    QUEUED = "queued"  # ready, waiting for an execution slot
    RUNNING = "running"  # an attempt is executing
    SUCCESS = "success"  # the last attempt exited 0
    FAILED = "failed"  # the last attempt failed and no retry is left
    SKIPPED = "skipped"  # nothing to do (a skip exit code, a cache hit)
    UP_FOR_RETRY = "up_for_retry"  # failed, another attempt is scheduled
    UPSTREAM_FAILED = "upstream_failed"  # a strong dependency failed: will never run
    TIMED_OUT = "timed_out"  # killed after its timeout and no retry is left
    CANCELLED = "cancelled"  # stopped by an operator


RUN_TERMINAL = frozenset({RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED})
RUN_ACTIVE = frozenset({RunState.QUEUED, RunState.RUNNING})

TASK_TERMINAL = frozenset(
    {
        TaskState.SUCCESS,
        TaskState.FAILED,
        TaskState.SKIPPED,
        TaskState.UPSTREAM_FAILED,
        TaskState.TIMED_OUT,
        TaskState.CANCELLED,
    }
)
# Terminal states that let downstream work go on.
TASK_SATISFIED = frozenset({TaskState.SUCCESS, TaskState.SKIPPED})
# Terminal states that make a run fail and block strong dependants.
TASK_BROKEN = TASK_TERMINAL - TASK_SATISFIED - {TaskState.CANCELLED}
# What an attempt can end as.
ATTEMPT_OUTCOMES = frozenset(
    {TaskState.SUCCESS, TaskState.FAILED, TaskState.SKIPPED, TaskState.TIMED_OUT}
)

# An operator may make an ended run active again (retry, resume, retry or mark a task).
RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset({RunState.RUNNING, RunState.CANCELLED}),
    RunState.RUNNING: frozenset({RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED}),
    RunState.SUCCESS: frozenset({RunState.RUNNING}),
    RunState.FAILED: frozenset({RunState.RUNNING}),
    RunState.CANCELLED: frozenset({RunState.RUNNING}),
}

# Operators' moves: an ended task may be rerun (back to pending) and any task that is not
# running may be marked success or skipped.
_RERUN_OR_MARK = frozenset({TaskState.PENDING, TaskState.SUCCESS, TaskState.SKIPPED})

TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset(
        {
            TaskState.QUEUED,
            TaskState.UPSTREAM_FAILED,
            TaskState.SKIPPED,
            TaskState.CANCELLED,
            TaskState.SUCCESS,
        }
    ),
    # A queued task whose wait timed out fails without running.
    TaskState.QUEUED: frozenset(
        {
            TaskState.RUNNING,
            TaskState.FAILED,
            TaskState.CANCELLED,
            TaskState.SUCCESS,
            TaskState.SKIPPED,
        }
    ),
    TaskState.RUNNING: frozenset(
        {
            TaskState.SUCCESS,
            TaskState.FAILED,
            TaskState.SKIPPED,
            TaskState.TIMED_OUT,
            TaskState.UP_FOR_RETRY,
            TaskState.CANCELLED,
        }
    ),
    TaskState.UP_FOR_RETRY: frozenset(
        {TaskState.QUEUED, TaskState.CANCELLED, TaskState.SUCCESS, TaskState.SKIPPED}
    ),
    **{ended: _RERUN_OR_MARK - {ended} for ended in TASK_TERMINAL},
}


def run_may_move(current: RunState, new: RunState) -> bool:
    return new in RUN_TRANSITIONS[current]


def task_may_move(current: TaskState, new: TaskState) -> bool:
    return new in TASK_TRANSITIONS[current]
