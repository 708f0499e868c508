"""The state machine's one decision function: (graph, run, event) -> transitions and effects.

Pure: no I/O, no clock, no randomness. The orchestrator loads a :class:`RunSnapshot`, calls
:func:`decide`, and carries the returned decision out in one database transaction.
Readiness is examined only for the successors of the task that just ended (O(out-degree)).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, assert_never

from service.engine.model import (
    AnnounceOutputs,
    ArchiveAttempt,
    AttemptFinished,
    Decision,
    Effect,
    EngineEvent,
    RememberCacheKey,
    RetryDue,
    RunCreated,
    RunSnapshot,
    TaskSnapshot,
    Transition,
    WaitFailed,
)
from service.engine.retry import backoff_delay, should_retry
from service.engine.states import (
    ATTEMPT_OUTCOMES,
    TASK_BROKEN,
    TASK_SATISFIED,
    TASK_TERMINAL,
    RunState,
    TaskState,
    run_may_move,
    task_may_move,
)
from service.errors import IllegalTransition
from service.spec.base import TriggerRule
from service.spec.conditions import Comparison, failed_expectations
from service.spec.graph import TaskGraph


def decide(graph: TaskGraph, run: RunSnapshot, event: EngineEvent) -> Decision:
    match event:
        case RunCreated():
            return _on_run_created(graph, run)
        case RetryDue():
            return _on_retry_due(run, event)
        case AttemptFinished():
            return _on_attempt_finished(graph, run, event)
        case WaitFailed():
            return _on_wait_failed(graph, run, event)
        case _:
            assert_never(event)


def _on_retry_due(run: RunSnapshot, event: RetryDue) -> Decision:
    task = run.tasks.get(event.task_id)
    if task is None or task.state is not TaskState.UP_FOR_RETRY:
        state = "missing" if task is None else task.state
        return Decision(ignored=f"retry of {event.task_id!r} is not due: the task is {state}")
    draft = Draft(run)
    draft.move_task(event.task_id, TaskState.QUEUED, f"retry after attempt {task.attempt}")
    return draft.decision()


def _on_wait_failed(graph: TaskGraph, run: RunSnapshot, event: WaitFailed) -> Decision:
    task = run.tasks.get(event.task_id)
    if task is None or task.state is not TaskState.QUEUED:
        state = "missing" if task is None else task.state
        return Decision(ignored=f"{event.task_id!r} no longer waits: the task is {state}")
    draft = Draft(run)
    draft.move_task(event.task_id, TaskState.FAILED, event.reason)
    _propagate(graph, draft, event.task_id)
    finish_run_if_done(draft)
    return draft.decision()


def _on_run_created(graph: TaskGraph, run: RunSnapshot) -> Decision:
    if run.state is not RunState.QUEUED:
        return Decision(ignored=f"run is {run.state}, not queued")
    draft = Draft(run)
    draft.move_run(RunState.RUNNING, "run started")
    for task_id in graph.roots:
        draft.move_task(task_id, TaskState.QUEUED, "no dependencies")
    return draft.decision()


def _on_attempt_finished(graph: TaskGraph, run: RunSnapshot, event: AttemptFinished) -> Decision:
    if event.outcome not in ATTEMPT_OUTCOMES:
        raise IllegalTransition(f"an attempt cannot end as {event.outcome}")
    task = run.tasks.get(event.task_id)
    if task is None:
        return Decision(ignored=f"run has no task {event.task_id!r}")
    if task.state is not TaskState.RUNNING or task.attempt != event.attempt:
        return Decision(
            ignored=f"stale completion: attempt {event.attempt} reported {event.outcome}, "
            f"but the task is {task.state} at attempt {task.attempt}"
        )
    draft = Draft(run)
    draft.effect(ArchiveAttempt(event.task_id, event.attempt))
    why = f"attempt {event.attempt} ended {event.outcome}" + (
        f": {event.reason}" if event.reason else ""
    )
    if event.lost and task.lost < event.lost_budget:
        draft.move_task(
            event.task_id,
            TaskState.UP_FOR_RETRY,
            f"{why}; lost through no fault of the task, retried at once without using its "
            f"retries ({task.lost + 1} of {event.lost_budget} such retries)",
            retry_at=event.at,
            lost=True,
        )
        return draft.decision()
    outcome, retryable = event.outcome, event.retryable
    broken = (
        failed_expectations(graph.expectations.get(event.task_id, ()), event.result)
        if outcome is TaskState.SUCCESS
        else []
    )
    if broken:  # the data is wrong: running it again will not change that
        outcome, retryable = TaskState.FAILED, False
        why = f"attempt {event.attempt} ended failed: expectation_failed: " + "; ".join(broken)
    draft.results[event.task_id] = event.result
    policy = graph.retries[event.task_id]
    tries = event.attempt - task.base - task.lost  # what counts against max_attempts
    if should_retry(policy, tries, outcome, event.exit_code, retryable):
        retry_at = event.at + backoff_delay(policy, tries, event.jitter_sample)
        draft.move_task(
            event.task_id,
            TaskState.UP_FOR_RETRY,
            f"{why}; try {tries + 1} of {policy.max_attempts} at "
            f"{retry_at.isoformat(timespec='seconds')}",
            retry_at=retry_at,
        )
        return draft.decision()
    draft.move_task(event.task_id, outcome, why)
    if outcome is TaskState.SUCCESS:
        draft.effect(AnnounceOutputs(event.task_id, event.attempt))
        if event.cache_key:
            draft.effect(RememberCacheKey(event.task_id, event.attempt, event.cache_key))
    _propagate(graph, draft, event.task_id)
    finish_run_if_done(draft)
    return draft.decision()


def _propagate(graph: TaskGraph, draft: Draft, finished: str) -> None:
    """Decide the successors that ``finished`` may have unblocked; follow what that ends."""
    frontier = [finished]
    while frontier:
        upstream = frontier.pop()
        for task_id in graph.successors[upstream]:
            if draft.task_state(task_id) is not TaskState.PENDING:
                continue
            states = [draft.task_state(dep) for dep in graph.predecessors[task_id]]
            verdict = readiness(graph.trigger_rules[task_id], states)
            if verdict is None:
                continue
            new_state, reason = verdict
            if new_state is TaskState.QUEUED and task_id in graph.conditions:
                new_state, reason = _when(graph.conditions[task_id], draft.results, reason)
            draft.move_task(task_id, new_state, f"{reason} (after {upstream})")
            if new_state is not TaskState.QUEUED:
                frontier.append(task_id)


def _when(
    condition: tuple[Comparison, ...],
    results: Mapping[str, Mapping[str, Any] | None],
    reason: str,
) -> tuple[TaskState, str]:
    """Queued if every comparison of the task's when: holds of its upstream results, else
    skipped, saying which does not and what was found."""
    for comparison in condition:
        result = results.get(comparison.task_id or "")
        if not comparison.holds(result):
            return TaskState.SKIPPED, f"when: {comparison} is false ({comparison.explain(result)})"
    return TaskState.QUEUED, f"{reason}; when: {' and '.join(map(str, condition))}"


def readiness(rule: TriggerRule, upstream: Sequence[TaskState]) -> tuple[TaskState, str] | None:
    """What a pending task becomes, given its trigger rule and its upstream states.

    None while undecided. ``success`` and ``skipped`` count as good, every other terminal
    state as bad; rules that need every upstream task wait until each has ended.
    """
    done = all(state in TASK_TERMINAL for state in upstream)
    good = [state in TASK_SATISFIED for state in upstream]
    bad = [state in TASK_TERMINAL and state not in TASK_SATISFIED for state in upstream]
    if rule is TriggerRule.ALL_SUCCESS:
        if any(bad):
            return TaskState.UPSTREAM_FAILED, "an upstream task did not succeed"
        return (TaskState.QUEUED, "every upstream task succeeded") if all(good) else None
    if rule is TriggerRule.ALL_DONE:
        return (TaskState.QUEUED, "every upstream task ended") if done else None
    if rule is TriggerRule.ALL_FAILED:
        if any(good):
            return TaskState.SKIPPED, "an upstream task succeeded (all_failed)"
        return (TaskState.QUEUED, "every upstream task failed") if done else None
    if rule is TriggerRule.ONE_FAILED:
        if any(bad):
            return TaskState.QUEUED, "an upstream task failed"
        return (TaskState.SKIPPED, "no upstream task failed (one_failed)") if done else None
    if rule is TriggerRule.ONE_SUCCESS:
        if any(state is TaskState.SUCCESS for state in upstream):
            return TaskState.QUEUED, "an upstream task succeeded"
        return (TaskState.UPSTREAM_FAILED, "no upstream task succeeded") if done else None
    if any(bad):  # none_failed
        return TaskState.UPSTREAM_FAILED, "an upstream task failed (none_failed)"
    return (TaskState.QUEUED, "no upstream task failed") if done else None


def finish_run_if_done(draft: Draft) -> None:
    states = draft.all_task_states()
    if not all(state in TASK_TERMINAL for state in states):
        return
    if any(state in TASK_BROKEN for state in states):
        draft.move_run(RunState.FAILED, "a task did not succeed")
    else:
        draft.move_run(RunState.SUCCESS, "every task succeeded")


class Draft:
    """The decision being drafted: the run as it will be after the transitions so far (also
    drafts operator commands, ``commands.py``)."""

    def __init__(self, run: RunSnapshot) -> None:
        self._run = run
        self._run_state = run.state
        self._changed: dict[str, TaskState] = {}
        self._transitions: list[Transition] = []
        self._effects: list[Effect] = []
        # What each task reported, as this decision leaves it (for when: conditions).
        self.results: dict[str, Mapping[str, Any] | None] = {
            task_id: task.result for task_id, task in run.tasks.items()
        }

    def task_state(self, task_id: str) -> TaskState:
        return self._changed.get(task_id) or self._run.tasks[task_id].state

    def all_task_states(self) -> list[TaskState]:
        return [self.task_state(task_id) for task_id in self._run.tasks]

    def move_task(
        self,
        task_id: str,
        new: TaskState,
        reason: str,
        retry_at: datetime | None = None,
        lost: bool = False,
        reset: bool = False,
    ) -> None:
        current = self.task_state(task_id)
        if not task_may_move(current, new):
            raise IllegalTransition(f"task {task_id!r}: {current} -> {new} is not allowed")
        self._changed[task_id] = new
        attempt = self._run.tasks[task_id].attempt
        self._transitions.append(
            Transition(task_id, current, new, attempt, reason, retry_at, lost, reset)
        )

    def move_run(self, new: RunState, reason: str) -> None:
        if not run_may_move(self._run_state, new):
            raise IllegalTransition(
                f"run {self._run.run_id}: {self._run_state} -> {new} is not allowed"
            )
        self._transitions.append(Transition(None, self._run_state, new, None, reason))
        self._run_state = new

    def effect(self, effect: Effect) -> None:
        self._effects.append(effect)

    def decision(self) -> Decision:
        return Decision(
            transitions=tuple(self._transitions),
            effects=tuple(self._effects),
            run_state=self._run_state,
        )


def start_attempt(task: TaskSnapshot) -> Transition:
    """The move of a queued task to running: its attempt number goes up by one."""
    if not task_may_move(task.state, TaskState.RUNNING):
        raise IllegalTransition(f"task {task.task_id!r}: {task.state} -> running is not allowed")
    attempt = task.attempt + 1
    return Transition(
        task.task_id, task.state, TaskState.RUNNING, attempt, f"attempt {attempt} started"
    )
