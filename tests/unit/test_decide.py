"""The state machine: examples for each move, and properties over random DAGs."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.engine.decide import decide, start_attempt
from service.engine.model import (
    AnnounceOutputs,
    ArchiveAttempt,
    AttemptFinished,
    Decision,
    RememberCacheKey,
    RunCreated,
    RunSnapshot,
    TaskSnapshot,
)
from service.engine.states import (
    RUN_TERMINAL,
    TASK_SATISFIED,
    TASK_TERMINAL,
    RunState,
    TaskState,
    run_may_move,
    task_may_move,
)
from service.errors import IllegalTransition
from service.spec.base import TriggerRule
from service.spec.graph import TaskGraph, build_graph
from service.spec.models import PipelineSpec


def graph_of(
    deps: Mapping[str, list[str]], rules: Mapping[str, str] | None = None, retries: int = 1
) -> TaskGraph:
    tasks = [
        {
            "id": t,
            "command": ["true"],
            "requires": r,
            "trigger_rule": (rules or {}).get(t, "all_success"),
            "retry": {"max_attempts": retries},
        }
        for t, r in deps.items()
    ]
    return build_graph(PipelineSpec.model_validate({"id": "p", "tasks": tasks}))


class Run:
    """A run held in memory, advanced only through decide()."""

    def __init__(self, graph: TaskGraph) -> None:
        self.graph = graph
        self.state = RunState.QUEUED
        self.tasks = {t: TaskSnapshot(t, TaskState.PENDING, 0) for t in graph.order}
        self.history: list[tuple[str | None, str, str]] = []

    def snapshot(self) -> RunSnapshot:
        return RunSnapshot("r", self.state, dict(self.tasks))

    def apply(self, decision: Decision) -> Decision:
        for t in decision.transitions:
            self.history.append((t.task_id, t.from_state, t.to_state))
            if t.task_id is None:
                assert run_may_move(RunState(t.from_state), RunState(t.to_state))
                self.state = RunState(t.to_state)
            else:
                assert task_may_move(TaskState(t.from_state), TaskState(t.to_state))
                old = self.tasks[t.task_id]
                self.tasks[t.task_id] = TaskSnapshot(t.task_id, TaskState(t.to_state), old.attempt)
        return decision

    def create(self) -> Decision:
        return self.apply(decide(self.graph, self.snapshot(), RunCreated()))

    def start(self, task_id: str) -> int:
        t = start_attempt(self.tasks[task_id])
        assert t.attempt is not None
        self.tasks[task_id] = TaskSnapshot(task_id, TaskState.RUNNING, t.attempt)
        return t.attempt

    def finish(self, task_id: str, outcome: TaskState, attempt: int | None = None) -> Decision:
        attempt = self.tasks[task_id].attempt if attempt is None else attempt
        event = AttemptFinished(task_id, attempt, outcome)
        return self.apply(decide(self.graph, self.snapshot(), event))

    def queued(self) -> list[str]:
        return [t for t, s in self.tasks.items() if s.state is TaskState.QUEUED]


def test_creation_starts_the_run_and_queues_the_roots() -> None:
    run = Run(graph_of({"a": [], "b": ["a"], "c": []}))
    run.create()
    assert run.state is RunState.RUNNING
    assert sorted(run.queued()) == ["a", "c"]
    assert run.tasks["b"].state is TaskState.PENDING


def test_a_chain_runs_in_order_and_succeeds() -> None:
    run = Run(graph_of({"a": [], "b": ["a"], "c": ["b"]}))
    run.create()
    for task_id in ("a", "b", "c"):
        assert run.queued() == [task_id]
        run.start(task_id)
        run.finish(task_id, TaskState.SUCCESS)
    assert run.state is RunState.SUCCESS


def test_a_join_waits_for_every_dependency() -> None:
    run = Run(graph_of({"a": [], "b": [], "c": ["a", "b"]}))
    run.create()
    run.start("a")
    run.finish("a", TaskState.SUCCESS)
    assert run.tasks["c"].state is TaskState.PENDING
    run.start("b")
    run.finish("b", TaskState.SKIPPED)
    assert run.queued() == ["c"]


def test_a_failure_fails_everything_downstream_and_the_run() -> None:
    run = Run(graph_of({"a": [], "b": ["a"], "c": ["b"], "side": []}))
    run.create()
    run.start("a")
    run.finish("a", TaskState.FAILED)
    assert run.tasks["b"].state is TaskState.UPSTREAM_FAILED
    assert run.tasks["c"].state is TaskState.UPSTREAM_FAILED
    assert run.state is RunState.RUNNING  # "side" still runs
    run.start("side")
    run.finish("side", TaskState.SUCCESS)
    assert run.state is RunState.FAILED


def test_a_timeout_counts_as_a_failure() -> None:
    run = Run(graph_of({"a": [], "b": ["a"]}))
    run.create()
    run.start("a")
    run.finish("a", TaskState.TIMED_OUT)
    assert run.tasks["b"].state is TaskState.UPSTREAM_FAILED
    assert run.state is RunState.FAILED


def test_an_applied_completion_says_what_to_carry_out() -> None:
    run = Run(graph_of({"a": [], "b": ["a"]}))
    run.create()
    run.start("a")
    event = AttemptFinished("a", 1, TaskState.SUCCESS, cache_key="k1")
    decision = run.apply(decide(run.graph, run.snapshot(), event))
    assert decision.effects == (
        ArchiveAttempt("a", 1),
        AnnounceOutputs("a", 1),
        RememberCacheKey("a", 1, "k1"),
    )


def test_a_failure_or_a_retry_is_archived_and_announces_nothing() -> None:
    run = Run(graph_of({"a": []}, retries=2))
    run.create()
    run.start("a")
    retried = run.finish("a", TaskState.FAILED)
    assert retried.effects == (ArchiveAttempt("a", 1),)
    assert run.tasks["a"].state is TaskState.UP_FOR_RETRY
    uncached = Run(graph_of({"a": []}))
    uncached.create()
    uncached.start("a")
    assert uncached.finish("a", TaskState.SUCCESS).effects == (
        ArchiveAttempt("a", 1),
        AnnounceOutputs("a", 1),
    )


def test_a_lost_attempt_is_retried_at_once_and_spares_the_tasks_retries() -> None:
    run = Run(graph_of({"a": []}))  # max_attempts 1: a failure would end it
    run.create()
    run.start("a")
    at = datetime(2026, 11, 21, tzinfo=UTC)
    lost = AttemptFinished("a", 1, TaskState.FAILED, at=at, lost=True, lost_budget=1)
    decision = run.apply(decide(run.graph, run.snapshot(), lost))
    [move] = decision.transitions
    assert (move.to_state, move.retry_at, move.lost) == (TaskState.UP_FOR_RETRY, at, True)
    # The budget spent, a second lost attempt counts like any failure: none is left.
    run.tasks["a"] = TaskSnapshot("a", TaskState.RUNNING, 2, lost=1)
    again = AttemptFinished("a", 2, TaskState.FAILED, at=at, lost=True, lost_budget=1)
    assert run.apply(decide(run.graph, run.snapshot(), again)).run_state is RunState.FAILED


@given(
    lost=st.integers(min_value=0, max_value=5),
    budget=st.integers(min_value=0, max_value=5),
    max_attempts=st.integers(min_value=1, max_value=5),
)
def test_a_task_gets_its_retries_whatever_was_lost_before(
    lost: int, budget: int, max_attempts: int
) -> None:
    graph = graph_of({"a": []}, retries=max_attempts)
    lost = min(lost, budget)  # lost attempts beyond the budget counted as tries
    for tries in range(1, max_attempts + 1):
        task = TaskSnapshot("a", TaskState.RUNNING, lost + tries, lost=lost)
        run = RunSnapshot("r", RunState.RUNNING, {"a": task})
        event = AttemptFinished("a", lost + tries, TaskState.FAILED, lost_budget=budget)
        retried = decide(graph, run, event).run_state is RunState.RUNNING
        assert retried == (tries < max_attempts)


def test_a_stale_completion_is_ignored() -> None:
    run = Run(graph_of({"a": []}))
    run.create()
    run.start("a")
    decision = run.finish("a", TaskState.SUCCESS, attempt=7)
    assert decision.transitions == ()
    assert decision.ignored is not None
    assert "stale completion" in decision.ignored
    assert run.tasks["a"].state is TaskState.RUNNING


def test_a_completion_of_a_task_that_is_not_running_is_ignored() -> None:
    run = Run(graph_of({"a": [], "b": ["a"]}))
    run.create()
    decision = run.finish("b", TaskState.SUCCESS, attempt=0)
    assert decision.ignored is not None
    assert "pending" in decision.ignored


def test_creation_twice_is_ignored() -> None:
    run = Run(graph_of({"a": []}))
    run.create()
    assert run.create().ignored == "run is running, not queued"


def test_an_attempt_cannot_end_as_a_non_outcome() -> None:
    run = Run(graph_of({"a": []}))
    run.create()
    run.start("a")
    with pytest.raises(IllegalTransition):
        run.finish("a", TaskState.QUEUED)


def test_only_queued_tasks_start() -> None:
    with pytest.raises(IllegalTransition):
        start_attempt(TaskSnapshot("a", TaskState.PENDING, 0))


def two_into_one(rule: str) -> Run:
    run = Run(graph_of({"a": [], "b": [], "c": ["a", "b"]}, {"c": rule}))
    run.create()
    run.start("a")
    run.start("b")
    return run


def test_all_done_runs_after_a_failure() -> None:
    run = two_into_one("all_done")
    run.finish("a", TaskState.FAILED)
    assert run.tasks["c"].state is TaskState.PENDING
    run.finish("b", TaskState.SUCCESS)
    assert run.queued() == ["c"]


def test_one_failed_runs_as_soon_as_one_fails_and_is_skipped_otherwise() -> None:
    run = two_into_one("one_failed")
    run.finish("a", TaskState.TIMED_OUT)
    assert run.queued() == ["c"]  # b is still running
    calm = two_into_one("one_failed")
    calm.finish("a", TaskState.SUCCESS)
    calm.finish("b", TaskState.SUCCESS)
    assert calm.tasks["c"].state is TaskState.SKIPPED
    assert calm.state is RunState.SUCCESS


def test_all_failed_is_skipped_as_soon_as_one_succeeds() -> None:
    run = two_into_one("all_failed")
    run.finish("a", TaskState.SUCCESS)
    assert run.tasks["c"].state is TaskState.SKIPPED
    both = two_into_one("all_failed")
    both.finish("a", TaskState.FAILED)
    both.finish("b", TaskState.FAILED)
    assert both.queued() == ["c"]


def test_one_success_runs_as_soon_as_one_succeeds() -> None:
    run = two_into_one("one_success")
    run.finish("a", TaskState.SUCCESS)
    assert run.queued() == ["c"]
    none = two_into_one("one_success")
    none.finish("a", TaskState.FAILED)
    none.finish("b", TaskState.SKIPPED)
    assert none.tasks["c"].state is TaskState.UPSTREAM_FAILED


def test_none_failed_accepts_skips_but_not_failures() -> None:
    run = two_into_one("none_failed")
    run.finish("a", TaskState.SKIPPED)
    run.finish("b", TaskState.SUCCESS)
    assert run.queued() == ["c"]
    bad = two_into_one("none_failed")
    bad.finish("a", TaskState.FAILED)
    assert bad.tasks["c"].state is TaskState.UPSTREAM_FAILED


def test_a_skip_by_rule_cascades() -> None:
    run = Run(graph_of({"a": [], "alert": ["a"], "after": ["alert"]}, {"alert": "one_failed"}))
    run.create()
    run.start("a")
    run.finish("a", TaskState.SUCCESS)
    assert run.tasks["alert"].state is TaskState.SKIPPED
    assert run.queued() == ["after"]


GOOD = {TaskState.SUCCESS, TaskState.SKIPPED}


def may_start(rule: str, upstream: list[TaskState]) -> bool:
    """An oracle written apart from the engine: may a task with ``rule`` start now?"""
    ended = [s for s in upstream if s in TASK_TERMINAL]
    bad = [s for s in ended if s not in GOOD]
    every_ended = len(ended) == len(upstream)
    return {
        "all_success": all(s in GOOD for s in upstream),
        "all_done": every_ended,
        "all_failed": every_ended and len(bad) == len(upstream),
        "one_failed": bool(bad),
        "one_success": TaskState.SUCCESS in upstream,
        "none_failed": every_ended and not bad,
    }[rule]


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    size = draw(st.integers(min_value=1, max_value=25))
    names = [f"t{i}" for i in range(size)]
    return {
        name: sorted(draw(st.sets(st.sampled_from(names[:i]), max_size=3)) if i else set())
        for i, name in enumerate(names)
    }


@settings(max_examples=300, deadline=None)
@given(
    deps=dags(),
    seed=st.integers(min_value=0, max_value=2**32),
    failure_rate=st.sampled_from([0.0, 0.1, 0.5]),
    rules=st.dictionaries(
        st.sampled_from([f"t{i}" for i in range(25)]),
        st.sampled_from([r.value for r in TriggerRule]),
    ),
)
def test_any_completion_order_keeps_the_rules(
    deps: dict[str, list[str]], seed: int, failure_rate: float, rules: dict[str, str]
) -> None:
    rng = random.Random(seed)
    rules = {task: rule for task, rule in rules.items() if task in deps}
    graph = graph_of(deps, rules)
    run = Run(graph)
    run.create()
    running: list[str] = []
    outcomes = [TaskState.SUCCESS, TaskState.SKIPPED, TaskState.FAILED, TaskState.TIMED_OUT]
    while run.queued() or running:
        # Start some queued tasks, finish a random running one: any interleaving.
        for task_id in run.queued():
            if rng.random() < 0.7 or not running:
                upstream = [run.tasks[dep].state for dep in graph.predecessors[task_id]]
                rule = rules.get(task_id, "all_success")
                assert not upstream or may_start(rule, upstream), (task_id, rule, upstream)
                run.start(task_id)
                running.append(task_id)
        if running:
            task_id = running.pop(rng.randrange(len(running)))
            fail = rng.random() < failure_rate
            outcome = rng.choice(outcomes[2:]) if fail else rng.choice(outcomes[:2])
            run.finish(task_id, outcome)
    assert all(s.state in TASK_TERMINAL for s in run.tasks.values())
    assert run.state in RUN_TERMINAL
    broken = any(s.state not in TASK_SATISFIED for s in run.tasks.values())
    assert run.state is (RunState.FAILED if broken else RunState.SUCCESS)
    run_moves = [h for h in run.history if h[0] is None]
    assert [to for _, _, to in run_moves] == ["running", str(run.state)]
